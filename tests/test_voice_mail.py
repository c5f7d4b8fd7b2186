"""Voicemail by e-mail through the app (SPEC §8): /voice/recording's outbox rows, the sender in the
background, the recording fetched from Twilio's REST API (the stand-in), a real SMTP server (aiosmtpd).

In one app (threading), then across two real processes (``python app.py``, gevent) sharing the database.
"""

from __future__ import annotations

import dataclasses

import pytest
from conftest import INI, PUBLIC_URL, browser_with_phone, login, make_team_files, signature_for, start_server
from deployment_helpers import wait_until
from smtp_helpers import SmtpServer
from twilio_standin import FlaskCallbacks

from shetphone import create_app
from shetphone.mail import RetrySchedule
from shetphone.settings import load_settings
from shetphone.store import Store

AUDIO = bytes(range(256)) * 40  # every byte value: the attachment must come back bit for bit
TEAM = "+441595000001"
CALLER = "+441595123456"  # "Mum" in presets.csv
ADDRESSES = "[shetphone:email]\nalice = alice@example.test\nbob = bob@example.test\n\n[shetphone:bridge]"


@pytest.fixture
def smtp():
    server = SmtpServer().start()
    yield server
    server.stop()


def mail_team(root, smtp: SmtpServer, standin, extra: str = ""):
    """Team files whose voicemail is mailed to alice and bob through ``smtp``, the audio from ``standin``."""
    files = make_team_files(root)
    standin.accept(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"])
    files.ini_template = INI.replace("[shetphone:bridge]", ADDRESSES)
    files.write_ini(extra=f"smtp_url = {smtp.url()}\nmail_from = Shetphone <phone@example.test>\n"
                          f"twilio_api_base = {standin.url}\n{extra}")
    return files


@pytest.fixture
def app_and_standin(tmp_path, smtp, standin):
    files = mail_team(tmp_path, smtp, standin)
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    standin.connect(FlaskCallbacks(app.test_client(), PUBLIC_URL), PUBLIC_URL)
    yield app, standin, files
    team = app.extensions["shetphone"]
    team.mail.stop()
    team.store.close()


def leave_voicemail(standin, seconds: int = 42) -> tuple[str, str]:
    """A caller reaches voicemail (nobody's phone is started) and leaves a message: (call sid, recording sid)."""
    call = standin.incoming_call(CALLER, TEAM)
    standin.run()
    recording_sid = standin.finish_recording(call.sid, audio=AUDIO, seconds=seconds)
    standin.run()
    return call.sid, recording_sid


def test_each_member_gets_the_voicemail_with_its_recording(app_and_standin, smtp):
    app, standin, files = app_and_standin
    _, recording_sid = leave_voicemail(standin)
    wait_until(lambda: len(smtp.inbox.received) == 2, "two mails", timeout=30)
    received = sorted(smtp.inbox.received, key=lambda r: r.rcpt_tos)
    assert [r.rcpt_tos for r in received] == [["alice@example.test"], ["bob@example.test"]]
    for mail in received:
        message = mail.message()
        assert message["Subject"] == "Voicemail from Mum on +44 1595 000001 (0:42)"
        assert message["From"] == "Shetphone <phone@example.test>"
        (attachment,) = message.iter_attachments()
        assert attachment.get_filename() == f"voicemail-{recording_sid}.mp3"
        assert attachment.get_content() == AUDIO
        text = mail.text()
        assert f"{PUBLIC_URL}/" in text and "Length: 0:42" in text and "Transcript" not in text
    outbox = app.extensions["shetphone"].store.outbox
    assert outbox.status(recording_sid, "alice@example.test")[0] == "sent"
    # Twilio repeating the callback adds no second mail.
    recording = next(d for d in standin.delivered if d.url.split("#")[0].endswith("/voice/recording"))
    signature = signature_for(files.auth_token, recording.url, recording.params)
    again = app.test_client().post("/voice/recording", data=recording.params, headers={"X-Twilio-Signature": signature})
    assert again.status_code == 204
    assert outbox.add_transcript(recording_sid, None, now=0) is None  # nothing waits any more
    assert len(smtp.inbox.received) == 2


def test_a_member_in_the_group_without_an_address_or_removed_gets_nothing(app_and_standin, smtp):
    app, standin, files = app_and_standin
    files.write_users({"alice": "alice-secret-1", "carol": "carol-secret-333"})  # bob removed
    from conftest import settled

    with app.app_context():
        settled(app.extensions["shetphone"].users)
    leave_voicemail(standin)
    wait_until(lambda: len(smtp.inbox.received) == 1, "alice's mail", timeout=30)
    assert smtp.inbox.received[0].rcpt_tos == ["alice@example.test"]


def test_a_mail_is_retried_after_the_smtp_server_was_down(app_and_standin, smtp):
    app, standin, _ = app_and_standin
    team = app.extensions["shetphone"]
    team.mail.schedule = RetrySchedule(first_delay=0.5, max_delay=1.0)  # seconds, not minutes, for the test
    smtp.stop()
    _, recording_sid = leave_voicemail(standin)
    outbox = team.store.outbox
    wait_until(lambda: outbox.status(recording_sid, "alice@example.test")[1] >= 1, "a failed attempt", timeout=30)
    status, _, error = outbox.status(recording_sid, "alice@example.test")
    assert status == "queued" and "refused" in error  # failed, kept, due again
    smtp.start()  # the same port
    wait_until(lambda: len(smtp.inbox.received) == 2, "the mails on a retry", timeout=30)
    assert outbox.status(recording_sid, "alice@example.test")[0] == "sent"
    assert team.store.calls.recording_for(recording_sid) is not None  # the voicemail was never at risk


def test_the_transcript_end_to_end_page_event_and_mail(tmp_path, smtp, standin):
    files = mail_team(tmp_path, smtp, standin, extra="voicemail_transcribe = yes")
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    standin.connect(FlaskCallbacks(app.test_client(), PUBLIC_URL), PUBLIC_URL)
    team = app.extensions["shetphone"]
    try:
        bob = browser_with_phone(app, "bob", ready=False)  # on the page, phone not started: not rung
        call_sid, recording_sid = leave_voicemail(standin)
        outbox = team.store.outbox
        assert outbox.status(recording_sid, "alice@example.test") == ("queued", 0, None)  # waiting for the text
        standin.transcribe(recording_sid, "Hello, it's Mum. Call me back.")
        standin.run()
        wait_until(lambda: len(smtp.inbox.received) == 2, "the mails with the transcript", timeout=30)
        for mail in smtp.inbox.received:
            assert "Transcript:\n  Hello, it's Mum. Call me back." in mail.text()
            assert "Hello, it&#x27;s Mum. Call me back." in mail.message().get_body(("html",)).get_content()
        voicemail_events = [e["args"][0] for e in bob.get_received() if e["name"] == "voicemail"]
        assert [e.get("transcript") for e in voicemail_events] == [None, "Hello, it's Mum. Call me back."]
        assert {e["call_sid"] for e in voicemail_events} == {call_sid}
        http = app.test_client()
        login(http, "alice")
        (listed,) = http.get("/calls").get_json()["calls"]
        assert listed["voicemail_transcript"] == "Hello, it's Mum. Call me back."
        assert listed["voicemail_url"] == f"/voicemail/{recording_sid}"
    finally:
        team.mail.stop()
        team.store.close()


# ----------------------------------------------------------------------------- two processes


def test_two_processes_send_each_mail_once_per_address(tmp_path, smtp, standin):
    files_a = mail_team(tmp_path, smtp, standin)
    files_b = dataclasses.replace(files_a)  # the same team, the same database; its own public_url
    first = start_server(files_a)
    second = start_server(files_b)
    try:
        recordings = []
        for n in range(8):
            server = (first, second)[n % 2]
            call_sid, recording_sid = f"CA{n:032x}", f"RE{n:032x}"
            standin.add_recording(recording_sid, AUDIO + bytes([n]), call_sid, seconds=n)
            inbound = {"CallSid": call_sid, "From": CALLER, "To": TEAM}
            assert "<Record" in server.post_signed("/voice", inbound).text  # nobody's phone started
            recording = {"CallSid": call_sid, "RecordingSid": recording_sid, "RecordingStatus": "completed",
                         "RecordingDuration": str(n), "RecordingUrl": f"{standin.url}/Recordings/{recording_sid}"}
            assert server.post_signed("/voice/recording", recording).status_code == 204
            recordings.append(recording_sid)
        store = Store(load_settings(files_a.root, files_a.environ).database_url)
        try:
            wait_until(lambda: all(store.outbox.status(sid, address)[0] == "sent" for sid in recordings
                                   for address in ("alice@example.test", "bob@example.test")),
                       "every row sent", timeout=60)
        finally:
            store.close()
        delivered = [(r.message()["Message-ID"], r.rcpt_tos[0]) for r in smtp.inbox.received]
        assert len(delivered) == 16 and len(set(delivered)) == 16
        by_recording = {r.message()["Message-ID"]: r for r in smtp.inbox.received}
        for received in by_recording.values():
            (attachment,) = received.message().iter_attachments()
            n = int(attachment.get_filename().removeprefix("voicemail-RE").removesuffix(".mp3"), 16)
            assert attachment.get_content() == AUDIO + bytes([n])
    finally:
        first.stop()
        second.stop()
