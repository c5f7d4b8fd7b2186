"""/voice for an incoming call with presence (SPEC §7), every ring case as TwiML, and transcripts (SPEC §8).

Browsers are Socket.IO test clients that send ``phone {"ready": true}`` as the
page does when its Device registers; do-not-disturb goes through ``POST /me/dnd``;
a call in progress through signed status callbacks, as Twilio sends them.
"""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET

import pytest
from conftest import INI, PUBLIC_URL, browser_with_phone, login, signature_for

from shetphone import create_app, twiml
from shetphone.presence import RedisBrowsers
from shetphone.settings import load_settings

CALLER = "+441595123456"  # a valid number: phone legs show it
TEAM = "+441595000001"  # alice and bob
CAROL = "+441595000004"
BOB_FORWARD = "+447400123401"
OUTSIDE = "+447400123409"
RECORDING = "RE" + "5" * 32
SECTIONS = f"[shetphone:forward]\nbob = {BOB_FORWARD}\ncarol = +447400123402\n\n[shetphone:bridge]"


@pytest.fixture
def app(team_files):
    """The team of conftest, with forward numbers for bob and carol and an outside phone on carol's number."""
    team_files.ini_template = INI.replace("[shetphone:bridge]", SECTIONS).replace(
        f"{CAROL} = carol", f"{CAROL} = carol {OUTSIDE}")
    team_files.write_ini()
    app = create_app(load_settings(team_files.root, team_files.environ), async_mode="threading",
                     overrides={"TESTING": True})
    yield app
    app.extensions["shetphone"].store.close()


class Twilio:
    """Signed posts to the app, as Twilio makes them."""

    def __init__(self, app, auth_token: str):
        self.client = app.test_client()
        self.auth_token = auth_token
        self.calls = 0

    def post(self, path: str, params: dict[str, str], signature: str | None = None):
        signature = signature or signature_for(self.auth_token, PUBLIC_URL + path, params)
        return self.client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    def incoming(self, number: str = TEAM, caller: str = CALLER) -> ET.Element:
        self.calls += 1
        response = self.post("/voice", {"CallSid": f"CA{self.calls:032d}", "From": caller, "To": number})
        assert response.status_code == 200 and response.mimetype == "text/xml"
        return ET.fromstring(response.data)

    def leg(self, root: str, leg: str, client: str, status: str, sequence: int):
        params = {"CallSid": leg, "ParentCallSid": root, "CallStatus": status, "SequenceNumber": str(sequence),
                  "From": CALLER, "To": f"client:{client}", "Direction": "outbound-dial"}
        assert self.post("/voice/status", params).status_code == 204


@pytest.fixture
def twilio(app, team_files) -> Twilio:
    return Twilio(app, team_files.auth_token)


def rung(root: ET.Element) -> tuple[str | None, list[str]]:
    """(the <Dial>'s callerId, its legs as client:NAME or E.164)."""
    (dial,) = root
    assert dial.tag == "Dial"
    legs = [f"client:{noun.text}" if noun.tag == "Client" else noun.text for noun in dial]
    assert all(noun.get("statusCallback") == PUBLIC_URL + "/voice/status#" + twiml.RETRIES for noun in dial)
    assert dial.get("action") == PUBLIC_URL + "/voice/dial-complete" and dial.get("timeout") == "20"
    return dial.get("callerId"), legs


def straight_to_voicemail(root: ET.Element) -> bool:
    return [child.tag for child in root] == ["Say", "Record", "Hangup"]


def set_dnd(app, name: str, on: bool) -> None:
    http = app.test_client()
    login(http, name)
    page = http.get("/").get_data(as_text=True)
    token = page.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
    assert http.post("/me/dnd", json={"dnd": on}, headers={"X-CSRFToken": token}).status_code == 200


# ----------------------------------------------------------------------------- who rings


def test_only_members_with_their_phone_started_ring_in_their_browsers(app, twilio):
    browser_with_phone(app, "alice")
    browser_with_phone(app, "bob", ready=False)  # connected, phone not started: offline, forwarded
    assert rung(twilio.incoming()) == (CALLER, ["client:alice", BOB_FORWARD])


def test_browsers_alone_ring_as_before_with_twilios_own_caller_id(app, twilio):
    browser_with_phone(app, "alice")
    browser_with_phone(app, "bob")
    assert rung(twilio.incoming()) == (None, ["client:alice", "client:bob"])


def test_a_phone_stopped_or_a_page_closed_is_offline_again(app, twilio):
    alice = browser_with_phone(app, "alice")
    bob = browser_with_phone(app, "bob")
    bob.emit("phone", {"ready": False})  # the Device unregistered
    assert rung(twilio.incoming())[1] == ["client:alice", BOB_FORWARD]
    alice.disconnect()
    assert rung(twilio.incoming())[1] == [BOB_FORWARD]  # alice has no forward number


def test_a_member_in_dnd_rings_nowhere_not_even_on_their_forward_number(app, twilio):
    browser_with_phone(app, "alice")
    browser_with_phone(app, "bob")
    set_dnd(app, "bob", True)
    assert rung(twilio.incoming()) == (None, ["client:alice"])
    set_dnd(app, "alice", True)
    assert straight_to_voicemail(twilio.incoming())
    set_dnd(app, "bob", False)
    assert rung(twilio.incoming()) == (None, ["client:bob"])


def test_a_member_on_a_call_is_busy_and_rings_nowhere_until_it_ends(app, twilio):
    browser_with_phone(app, "alice")
    browser_with_phone(app, "bob")
    twilio.incoming()
    twilio.leg("CA" + "1".zfill(32), "CB" + "a" * 32, "alice", "in-progress", 1)
    assert rung(twilio.incoming()) == (None, ["client:bob"])
    twilio.leg("CA" + "1".zfill(32), "CB" + "a" * 32, "alice", "completed", 2)
    assert rung(twilio.incoming()) == (None, ["client:alice", "client:bob"])


def test_an_offline_member_without_a_forward_number_leaves_voicemail(app, twilio):
    root = twilio.incoming()  # alice offline (no forward number), bob offline: his forward number
    assert rung(root)[1] == [BOB_FORWARD]
    set_dnd(app, "bob", True)
    assert straight_to_voicemail(twilio.incoming())  # no ringing first


def test_outside_phones_ring_whatever_the_members_states(app, twilio):
    assert rung(twilio.incoming(CAROL)) == (CALLER, [OUTSIDE, "+447400123402"])  # carol offline: forwarded
    browser_with_phone(app, "carol")
    assert rung(twilio.incoming(CAROL)) == (CALLER, ["client:carol", OUTSIDE])
    set_dnd(app, "carol", True)
    assert rung(twilio.incoming(CAROL)) == (CALLER, [OUTSIDE])


@pytest.mark.parametrize("caller", ["anonymous", "+447700900123", "+4415"])
def test_a_withheld_or_invalid_caller_shows_the_team_number_on_phone_legs(twilio, caller):
    assert rung(twilio.incoming(caller=caller)) == (TEAM, [BOB_FORWARD])


def test_a_removed_member_is_neither_rung_nor_forwarded_to(app, team_files, twilio):
    from conftest import PASSWORDS, settled

    browser_with_phone(app, "alice")
    team_files.write_users({name: password for name, password in PASSWORDS.items() if name != "bob"})
    with app.app_context():
        settled(app.extensions["shetphone"].users)
    assert rung(twilio.incoming()) == (None, ["client:alice"])


def test_with_shared_presence_unreachable_every_member_not_dnd_or_busy_rings(app, twilio, refusing_url):
    team = app.extensions["shetphone"]
    team.presence.browsers = RedisBrowsers(refusing_url, timeout=0.2)
    set_dnd(app, "bob", True)
    assert rung(twilio.incoming()) == (None, ["client:alice"])  # alice may have a browser on another process


def test_with_the_database_unreadable_every_member_rings(app, twilio, monkeypatch):
    from shetphone.store import StoreUnavailable

    def unavailable(users):
        raise StoreUnavailable("database: no answer within 5 s")

    presence = app.extensions["shetphone"].presence
    for asked in ("_dnd", "_both"):  # each alone, or both in one read
        monkeypatch.setattr(presence, asked, unavailable)
    assert rung(twilio.incoming()) == (None, ["client:alice", "client:bob"])


# ----------------------------------------------------------------------------- the presence event


def test_a_call_answered_and_ended_is_announced_busy_then_available(app, twilio):
    bob = browser_with_phone(app, "bob")
    browser_with_phone(app, "alice")
    carol = browser_with_phone(app, "carol")  # not a teammate: hears nothing of them
    for browser in (bob, carol):
        browser.get_received()
    twilio.incoming()
    twilio.leg("CA" + "1".zfill(32), "CB" + "a" * 32, "alice", "in-progress", 1)
    assert wait_for_presence(bob, {"user": "alice", "state": "busy"})
    twilio.leg("CA" + "1".zfill(32), "CB" + "a" * 32, "alice", "completed", 2)
    assert wait_for_presence(bob, {"user": "alice", "state": "available"})
    assert [e for e in carol.get_received() if e["name"] == "presence"] == []


def wait_for_presence(browser, expected: dict, timeout: float = 10) -> bool:
    """The status callback announces off the request path: wait (never asserting how long) for the event."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(e["name"] == "presence" and e["args"][0] == expected for e in browser.get_received()):
            return True
        time.sleep(0.05)
    return False


def test_a_bad_phone_event_is_ignored_and_the_connection_kept(app, twilio):
    browser = browser_with_phone(app, "alice", ready=False)
    for junk in ("ready", {"ready": "yes"}, {"ready": 1}, None, ["ready"]):
        browser.emit("phone", junk)
    assert browser.is_connected()
    assert rung(twilio.incoming())[1] == [BOB_FORWARD]  # alice is still offline


# ----------------------------------------------------------------------------- transcripts


@pytest.fixture
def transcribing(app_with):
    return app_with("voicemail_transcribe = yes")


def test_every_record_asks_for_a_transcript_when_transcribing(transcribing, team_files):
    twilio = Twilio(transcribing, team_files.auth_token)  # conftest's team: no forward numbers
    straight = twilio.incoming()  # nobody's phone is started: straight to voicemail
    after_ringing = ET.fromstring(twilio.post("/voice/dial-complete", {"CallSid": "CA" + "1".zfill(32),
                                                                       "DialCallStatus": "no-answer"}).data)
    for root in (straight, after_ringing):
        assert straight_to_voicemail(root)
        record = root.find("Record")
        assert record.get("transcribe") == "true"
        assert record.get("transcribeCallback") == PUBLIC_URL + "/voice/transcription#" + twiml.RETRIES
        assert record.get("action") == PUBLIC_URL + "/voice/recorded"


def test_without_transcribing_no_transcript_is_asked_for(twilio):
    root = ET.fromstring(twilio.post("/voice/dial-complete", {"CallSid": "CA1", "DialCallStatus": "busy"}).data)
    record = root.find("Record")
    assert record.get("transcribe") is None and record.get("transcribeCallback") is None
    assert record.get("action") == PUBLIC_URL + "/voice/recorded"


def leave_voicemail(twilio: Twilio) -> str:
    twilio.incoming()
    call_sid = "CA" + "1".zfill(32)
    recording = {"CallSid": call_sid, "RecordingSid": RECORDING, "RecordingStatus": "completed",
                 "RecordingDuration": "7", "RecordingUrl": f"https://api.twilio.com/Recordings/{RECORDING}"}
    assert twilio.post("/voice/recording", recording).status_code == 204
    return call_sid


def transcription(text: str, status: str = "completed") -> dict[str, str]:
    return {"CallSid": "CA" + "1".zfill(32), "RecordingSid": RECORDING, "TranscriptionSid": "TR" + "1" * 32,
            "TranscriptionText": text, "TranscriptionStatus": status,
            "RecordingUrl": f"https://api.twilio.com/Recordings/{RECORDING}"}


def test_a_transcript_is_stored_listed_and_sent_again_with_the_voicemail_event(app, twilio):
    bob = browser_with_phone(app, "bob")
    carol = browser_with_phone(app, "carol")
    call_sid = leave_voicemail(twilio)
    (first,) = [e["args"][0] for e in bob.get_received() if e["name"] == "voicemail"]
    assert "transcript" not in first
    assert twilio.post("/voice/transcription", transcription("Hello, it's Mum. Call me back.")).status_code == 204
    (again,) = [e["args"][0] for e in bob.get_received() if e["name"] == "voicemail"]
    assert again == {**first, "transcript": "Hello, it's Mum. Call me back."}
    assert again["call_sid"] == call_sid and again["recording_url"] == f"/voicemail/{RECORDING}"
    assert [e for e in carol.get_received() if e["name"] == "voicemail"] == []
    http = app.test_client()
    login(http, "alice")
    (listed,) = http.get("/calls").get_json()["calls"]
    assert listed["voicemail_transcript"] == "Hello, it's Mum. Call me back."


def test_a_failed_transcription_sends_nothing_and_lists_none(app, twilio):
    bob = browser_with_phone(app, "bob")
    leave_voicemail(twilio)
    bob.get_received()
    assert twilio.post("/voice/transcription", transcription("(blank)", status="failed")).status_code == 204
    assert bob.get_received() == []
    http = app.test_client()
    login(http, "bob")
    assert http.get("/calls").get_json()["calls"][0]["voicemail_transcript"] is None


def test_the_transcription_callback_needs_twilios_signature(app, twilio):
    leave_voicemail(twilio)
    assert twilio.post("/voice/transcription", transcription("Forged."), signature="forged").status_code == 403
    http = app.test_client()
    login(http, "alice")
    assert http.get("/calls").get_json()["calls"][0]["voicemail_transcript"] is None


def test_a_transcript_of_an_unknown_recording_is_dropped(twilio):
    assert twilio.post("/voice/transcription", transcription("Nobody's.")).status_code == 204
    bad = {**transcription("x"), "RecordingSid": "nonsense"}
    assert twilio.post("/voice/transcription", bad).status_code == 204


def test_a_call_sent_straight_to_voicemail_is_listed_as_missed_and_told_to_the_pages(app, twilio):
    set_dnd(app, "bob", True)
    alice_page = browser_with_phone(app, "alice", ready=False)
    alice_page.get_received()
    assert straight_to_voicemail(twilio.incoming())
    (event,) = [e["args"][0] for e in alice_page.get_received() if e["name"] == "call_status"]
    assert (event["call_sid"], event["parent_call_sid"], event["status"], event["number"], event["from"]) == (
        "CA" + "1".zfill(32), None, "no-answer", TEAM, CALLER)
    http = app.test_client()
    login(http, "alice")
    (listed,) = http.get("/calls").get_json()["calls"]
    assert (listed["status"], listed["missed"]) == ("no-answer", True)
