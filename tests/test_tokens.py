import time

import jwt
import pytest

from shetphone.settings import TwilioSettings
from shetphone.tokens import voice_token

TWILIO = TwilioSettings(
    account_sid="AC" + "1" * 32, auth_token="t" * 32, app_sid="AP" + "2" * 32, api_key="SK" + "3" * 32,
    api_secret="s3cr3t" * 6,
)


def test_token_claims():
    token = voice_token(TWILIO, "alice", 600)
    claims = jwt.decode(token, TWILIO.api_secret, algorithms=["HS256"])
    header = jwt.get_unverified_header(token)
    assert header["cty"] == "twilio-fpa;v=1"
    assert claims["iss"] == TWILIO.api_key
    assert claims["sub"] == TWILIO.account_sid
    assert abs(claims["exp"] - time.time() - 600) < 5
    grants = claims["grants"]
    assert grants["identity"] == "alice"
    assert grants["voice"]["outgoing"]["application_sid"] == TWILIO.app_sid
    assert grants["voice"]["incoming"]["allow"] is True


def test_token_is_signed_with_the_api_secret():
    token = voice_token(TWILIO, "alice", 600)
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(token, "another secret of at least 32 bytes", algorithms=["HS256"])
