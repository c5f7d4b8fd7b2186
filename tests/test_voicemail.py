"""Voicemail end to end: unanswered call, recording callback, event, listing, and our audio route.

The Twilio stand-in (tests/twilio_standin.py) serves the recording at ``twilio_api_base``:
it checks the account's credentials and serves bytes, with Range support.
"""

from __future__ import annotations

import pytest
from conftest import login, make_team_files
from twilio_standin import TwilioStandIn

from shetphone import create_app
from shetphone.settings import load_settings
from shetphone.voicemail import is_recording_sid

AUDIO = bytes(range(256)) * 64  # 16 KiB standing in for an MP3
ROOT_SID = "CA" + "9" * 32
RECORDING_SID = "RE" + "ab" * 16


@pytest.fixture
def media_host():
    host = TwilioStandIn()
    host.add_recording(RECORDING_SID, AUDIO)
    yield host
    host.stop()


@pytest.fixture
def team(tmp_path, media_host):
    files = make_team_files(tmp_path, extra=f"twilio_api_base = {media_host.url}")
    media_host.accept(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"])
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    yield files, app
    app.extensions["shetphone"].store.close()


def signed_post(files, client, path, params):
    from conftest import PUBLIC_URL, signature_for

    signature = signature_for(files.auth_token, PUBLIC_URL + path, params)
    return client.post(path, data=params, headers={"X-Twilio-Signature": signature})


def leave_voicemail(files, client) -> None:
    inbound = {"CallSid": ROOT_SID, "From": "+447700900123", "To": "+441595000001"}
    assert signed_post(files, client, "/voice", inbound).status_code == 200
    for sequence, status in enumerate(["ringing", "no-answer"]):
        signed_post(files, client, "/voice/status", {
            "CallSid": "CA" + "8" * 32, "ParentCallSid": ROOT_SID, "CallStatus": status,
            "SequenceNumber": str(sequence), "To": "client:alice", "From": "+447700900123"})
    twiml = signed_post(files, client, "/voice/dial-complete", {**inbound, "DialCallStatus": "no-answer"})
    assert b"<Record" in twiml.data
    recording = signed_post(files, client, "/voice/recording", {
        "CallSid": ROOT_SID, "RecordingSid": RECORDING_SID, "RecordingStatus": "completed",
        "RecordingDuration": "17", "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE"})
    assert recording.status_code == 204


def test_an_unanswered_call_becomes_a_voicemail_event_and_a_listed_missed_call(team):
    files, app = team
    client = app.test_client()
    login(client, "alice")
    socket = app.extensions["socketio"].test_client(app, flask_test_client=client)
    carol_http = app.test_client()
    login(carol_http, "carol")
    carol = app.extensions["socketio"].test_client(app, flask_test_client=carol_http)
    socket.get_received()
    carol.get_received()

    leave_voicemail(files, app.test_client())

    voicemails = [e["args"][0] for e in socket.get_received() if e["name"] == "voicemail"]
    assert voicemails == [{"call_sid": ROOT_SID, "number": "+441595000001", "from": "+447700900123",
                           "recording_url": f"/voicemail/{RECORDING_SID}", "duration": 17}]
    assert [e for e in carol.get_received() if e["name"] == "voicemail"] == []

    (call,) = client.get("/calls").get_json()["calls"]
    assert call["call_sid"] == ROOT_SID
    assert call["voicemail_url"] == f"/voicemail/{RECORDING_SID}"
    assert call["direction"] == "inbound"
    assert "twilio.com" not in client.get("/calls").get_data(as_text=True)


def test_our_route_streams_twilios_audio_with_the_accounts_credentials(team, media_host):
    files, app = team
    leave_voicemail(files, app.test_client())
    client = app.test_client()
    login(client, "bob")  # bob rings on the same number
    response = client.get(f"/voicemail/{RECORDING_SID}")
    assert response.status_code == 200
    assert response.mimetype == "audio/mpeg"
    assert response.data == AUDIO
    seen = media_host.requests_seen[-1]
    assert seen.path == f"/2010-04-01/Accounts/{files.environ['TWILIO_ACCOUNT_SID']}/Recordings/{RECORDING_SID}.mp3"
    assert seen.authorization == media_host.expected_auth
    assert files.environ["TWILIO_AUTH_TOKEN"].encode() not in b"".join(
        f"{k}: {v}".encode() for k, v in response.headers.items())


def test_seeking_passes_range_through(team):
    files, app = team
    leave_voicemail(files, app.test_client())
    client = app.test_client()
    login(client, "alice")
    response = client.get(f"/voicemail/{RECORDING_SID}", headers={"Range": "bytes=100-199"})
    assert response.status_code == 206
    assert response.data == AUDIO[100:200]
    assert response.headers["Content-Range"] == f"bytes 100-199/{len(AUDIO)}"


def test_someone_elses_voicemail_is_not_found(team, media_host):
    files, app = team
    leave_voicemail(files, app.test_client())
    client = app.test_client()
    login(client, "carol")
    assert client.get(f"/voicemail/{RECORDING_SID}").status_code == 404
    assert client.get("/voicemail/not-a-sid").status_code == 404
    assert media_host.requests_seen == []  # nothing fetched for someone not entitled


def test_logged_out_is_401(team):
    _, app = team
    assert app.test_client().get(f"/voicemail/{RECORDING_SID}").status_code == 401


def test_media_host_down_is_a_clear_502(tmp_path):
    files = make_team_files(tmp_path, extra="twilio_api_base = http://127.0.0.1:9")
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    leave_voicemail(files, app.test_client())
    client = app.test_client()
    login(client, "alice")
    response = client.get(f"/voicemail/{RECORDING_SID}")
    assert response.status_code == 502
    assert "could not be reached" in response.get_json()["error"]
    app.extensions["shetphone"].store.close()


def test_a_recording_sid_is_re_and_32_hex_digits_and_nothing_after():
    assert is_recording_sid(RECORDING_SID)
    not_sids = (RECORDING_SID + "\n", RECORDING_SID + "0", "RE" + "g" * 32)  # a newline: what ^...$ let through
    assert [text for text in not_sids if is_recording_sid(text)] == []


def test_a_recording_for_an_unknown_call_emits_nothing(team):
    files, app = team
    client = app.test_client()
    login(client, "alice")
    socket = app.extensions["socketio"].test_client(app, flask_test_client=client)
    socket.get_received()
    response = signed_post(files, app.test_client(), "/voice/recording", {
        "CallSid": "CA" + "7" * 32, "RecordingSid": RECORDING_SID, "RecordingStatus": "completed",
        "RecordingDuration": "3"})
    assert response.status_code == 204
    assert socket.get_received() == []


def test_old_calls_are_pruned_by_the_running_server(tmp_path):
    """keep_days: the server's housekeeping prunes at start (and hourly) without anyone asking."""
    from datetime import UTC, datetime, timedelta

    from conftest import start_server

    from shetphone.store import Store

    files = make_team_files(tmp_path, extra="keep_days = 30")
    database = f"sqlite:///{tmp_path / 'shetphone.sqlite3'}"
    old_store = Store(database, keep_days=30, clock=lambda: datetime.now(UTC) - timedelta(days=31))
    for old_sid in ("CA" + "1" * 32, "CA" + "2" * 32):
        old_store.calls.open_call(old_sid, direction="inbound", number="+441595000001", from_="+447700900123",
                                  to="+441595000001", client=None)
    old_store.close()
    recent = Store(database, keep_days=30)
    recent.calls.open_call("CA" + "3" * 32, direction="inbound", number="+441595000001", from_="+447700900124",
                           to="+441595000001", client=None)
    server = start_server(files)
    try:
        import time

        from conftest import live_login

        session = live_login(server, "alice")
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            calls = session.get(server.url + "/calls", timeout=10).json()["calls"]
            if len(calls) == 1:
                break
            time.sleep(0.2)
        assert [call["call_sid"] for call in calls] == ["CA" + "3" * 32]
        assert "pruned 2 calls older than 30 days" in server.log()
    finally:
        server.stop()
        recent.close()
