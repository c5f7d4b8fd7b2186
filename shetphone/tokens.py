"""Twilio access tokens for the browsers' Voice SDK."""

from __future__ import annotations

from twilio.jwt.access_token import AccessToken
from twilio.jwt.access_token.grants import VoiceGrant

from .settings import TwilioSettings


def voice_token(twilio: TwilioSettings, identity: str, ttl: int) -> str:
    """An AccessToken with a VoiceGrant: place calls through the TwiML App, receive calls as ``identity``."""
    token = AccessToken(twilio.account_sid, twilio.api_key, twilio.api_secret, identity=identity, ttl=ttl)
    token.add_grant(VoiceGrant(outgoing_application_sid=twilio.app_sid, incoming_allow=True))
    jwt = token.to_jwt()
    return jwt.decode() if isinstance(jwt, bytes) else jwt
