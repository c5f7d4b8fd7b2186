"""X-Twilio-Signature on every Twilio route: valid, forged, missing, wrong URL, behind a proxy."""

import pytest
from conftest import PUBLIC_URL, signature_for

from shetphone import create_app
from shetphone.settings import load_settings

TWILIO_ROUTES = ["/voice", "/voice/status", "/voice/dial-complete", "/voice/recording"]
INBOUND = {"From": "+447700900123", "To": "+441595000001", "CallSid": "CA" + "a" * 32}


def calls_logged(app) -> int:
    return len(app.extensions["shetphone"].store.calls.calls_for({"+441595000001"}, None, 50))


def test_valid_signature_is_accepted(twilio_post, app, phone_ready):
    phone_ready("alice")  # so the call rings her
    response = twilio_post("/voice", INBOUND)
    assert response.status_code == 200
    assert b"<Client" in response.data
    assert calls_logged(app) == 1


@pytest.mark.parametrize("path", TWILIO_ROUTES)
def test_missing_signature_is_403_without_side_effect(client, app, path):
    response = client.post(path, data=INBOUND)
    assert response.status_code == 403
    assert calls_logged(app) == 0


@pytest.mark.parametrize("path", TWILIO_ROUTES)
def test_forged_signature_is_403(twilio_post, team_files, app, path):
    forged = signature_for("not-the-auth-token", PUBLIC_URL + path, INBOUND)
    assert twilio_post(path, INBOUND, signature=forged).status_code == 403
    assert calls_logged(app) == 0


def test_signature_of_other_fields_is_403(twilio_post, team_files, client, app):
    signature = signature_for(team_files.auth_token, PUBLIC_URL + "/voice", INBOUND)
    tampered = {**INBOUND, "To": "+441595000004"}
    response = client.post("/voice", data=tampered, headers={"X-Twilio-Signature": signature})
    assert response.status_code == 403
    assert calls_logged(app) == 0


def test_signature_for_the_wrong_url_is_403(team_files, client):
    signature = signature_for(team_files.auth_token, "https://attacker.example.test/voice", INBOUND)
    assert client.post("/voice", data=INBOUND, headers={"X-Twilio-Signature": signature}).status_code == 403


def test_query_string_is_part_of_the_signed_url(team_files, client):
    url = PUBLIC_URL + "/voice/status?attempt=2"
    params = {"CallSid": "CA1", "CallStatus": "ringing"}
    good = signature_for(team_files.auth_token, url, params)
    assert client.post("/voice/status?attempt=2", data=params, headers={"X-Twilio-Signature": good}).status_code == 204
    without_query = signature_for(team_files.auth_token, PUBLIC_URL + "/voice/status", params)
    response = client.post("/voice/status?attempt=2", data=params, headers={"X-Twilio-Signature": without_query})
    assert response.status_code == 403


def test_behind_a_proxy_the_public_url_is_signed_not_the_local_host(team_files, client):
    # The request reaches us as http://127.0.0.1:5000 from nginx; Twilio signed https://phone.example.test.
    signature = signature_for(team_files.auth_token, PUBLIC_URL + "/voice", INBOUND)
    response = client.post(
        "/voice", data=INBOUND, base_url="http://127.0.0.1:5000",
        headers={"X-Twilio-Signature": signature, "X-Forwarded-Proto": "https", "Host": "127.0.0.1:5000"},
    )
    assert response.status_code == 200


def test_under_a_path_prefix(tmp_path):
    from conftest import make_team_files

    files = make_team_files(tmp_path, public_url="https://example.test/shetphone")
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    client = app.test_client()
    signature = signature_for(files.auth_token, "https://example.test/shetphone/voice", INBOUND)
    response = client.post("/voice", data=INBOUND, headers={"X-Twilio-Signature": signature},
                           environ_overrides={"SCRIPT_NAME": "/shetphone"})
    assert response.status_code == 200
    # Nobody's phone is started: straight to voicemail, whose URLs follow the prefix too.
    assert b'recordingStatusCallback="https://example.test/shetphone/voice/recording#rc=3&amp;' in response.data
    assert b'action="https://example.test/shetphone/voice/recorded"' in response.data
    app.extensions["shetphone"].store.close()


def test_without_auth_token_twilio_routes_say_so(tmp_path):
    from conftest import make_team_files

    files = make_team_files(tmp_path)
    del files.environ["TWILIO_AUTH_TOKEN"]
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    response = app.test_client().post("/voice", data=INBOUND, headers={"X-Twilio-Signature": "x"})
    assert response.status_code == 503
    assert "TWILIO_AUTH_TOKEN" in response.get_json()["error"]
    app.extensions["shetphone"].store.close()


def test_a_signature_over_the_url_with_its_default_port_is_accepted_too(twilio_post, team_files):
    # Twilio's own validators accept both forms: its signing has been seen to add :443.
    with_port = PUBLIC_URL.replace("https://phone.example.test", "https://phone.example.test:443") + "/voice"
    signature = signature_for(team_files.auth_token, with_port, INBOUND)
    assert twilio_post("/voice", INBOUND, signature=signature).status_code == 200


@pytest.mark.parametrize(
    ("public_url", "signed_base", "accepted"),
    [
        ("https://phone.example.test:8443", "https://phone.example.test:8443", True),
        ("https://phone.example.test:8443", "https://phone.example.test", True),  # as the library allows
        ("https://phone.example.test:8443", "https://phone.example.test:9443", False),
        ("https://[2001:db8::1]", "https://[2001:db8::1]:443", True),
        ("https://www.example.test/shetphone", "https://www.example.test/shetphone", True),
        ("https://www.example.test/shetphone", "https://www.example.test", False),
    ],
)
def test_webhook_signature_checks_the_configured_url_in_either_port_form(public_url, signed_base, accepted):
    from shetphone.web.signature import WebhookSignature

    token = "0123456789abcdef"
    signature = signature_for(token, signed_base + "/voice?attempt=1", INBOUND)
    assert WebhookSignature(token, public_url).valid("/voice?attempt=1", INBOUND, signature) is accepted
    assert WebhookSignature("another-token", public_url).valid("/voice?attempt=1", INBOUND, signature) is False


def test_a_callback_signed_with_its_retry_fragment_is_accepted_and_no_other_fragment(team_files, client):
    from shetphone.twiml import RETRIES

    params = {"CallSid": "CA1", "CallStatus": "ringing"}
    url = PUBLIC_URL + "/voice/status"
    with_ours = signature_for(team_files.auth_token, f"{url}#{RETRIES}", params)
    assert client.post("/voice/status", data=params, headers={"X-Twilio-Signature": with_ours}).status_code == 204
    with_another = signature_for(team_files.auth_token, f"{url}#rc=5&rp=all", params)
    assert client.post("/voice/status", data=params, headers={"X-Twilio-Signature": with_another}).status_code == 403
