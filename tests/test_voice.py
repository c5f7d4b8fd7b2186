"""The webhooks: TwiML for every case of SPEC §3, and the events they cause."""

import logging
import time
import xml.etree.ElementTree as ET

import pytest
from conftest import PASSWORDS, PUBLIC_URL, login, make_team_files, settled, signature_for, twilio_poster

from shetphone import create_app, stream_auth, twiml
from shetphone.settings import load_settings

ALICE_CALL = {"From": "client:alice", "CallSid": "CA" + "1" * 32}
INBOUND = {"From": "+447700900123", "CallSid": "CA" + "2" * 32}


def twiml_of(response) -> ET.Element:
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    return ET.fromstring(response.data)


def said(root: ET.Element) -> str:
    assert [child.tag for child in root] == ["Say", "Hangup"]
    return root[0].text


def remove_users(app, team_files, *names: str) -> None:
    team_files.write_users({n: p for n, p in PASSWORDS.items() if n not in names})
    with app.app_context():
        settled(app.extensions["shetphone"].users)


def test_outbound_call_is_dialled_in_e164_with_the_chosen_caller_id(twilio_post):
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": "01595 123456"}))
    (dial,) = root
    assert dial.tag == "Dial"
    assert dial.get("callerId") == "+441595000001"
    assert dial.get("answerOnBridge") == "true"
    assert dial.get("action") == PUBLIC_URL + "/voice/dial-complete"  # call control moves calls through it
    (number,) = dial
    assert number.text == "+441595123456"
    assert number.get("statusCallback") == PUBLIC_URL + "/voice/status#" + twiml.RETRIES
    assert number.get("statusCallbackEvent") == "initiated ringing answered completed"


def test_outbound_caller_id_follows_the_destination_country(twilio_post):
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": "+12015550123"}))
    assert root[0].get("callerId") == "+15005550006"


def test_outbound_with_an_allowed_caller_id_parameter(twilio_post):
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": "+441595123456", "CallerId": "+15005550006"}))
    assert root[0].get("callerId") == "+15005550006"


@pytest.mark.parametrize(
    ("to", "extra", "reason"),
    [
        ("not a number", {}, "not a valid phone number"),
        ("+33142685300", {}, "country are not allowed"),
        ("09098790000", {}, "premium rate"),
        ("+441595123456", {"CallerId": "+441595000004"}, "may not call from that number"),
    ],
)
def test_outbound_refusals_say_why_and_never_dial(twilio_post, to, extra, reason):
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": to, **extra}))
    assert reason in said(root)
    assert root.find("Dial") is None


@pytest.mark.parametrize(
    ("to", "reason"),
    [
        ("+881612345678", "satellite phones"),  # Iridium: "mobile" in region 001, never in "*"
        ("+870772001799", "satellite phones"),  # Inmarsat
        ("07012 345678", "personal numbers"),  # UK 070
        ("05512 345678", "special rate numbers"),  # UK 055 UAN
    ],
)
def test_toll_fraud_destinations_are_refused_even_with_every_country_allowed(tmp_path, to, reason):
    files = make_team_files(tmp_path, extra="allowed_countries = *")
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    params = {**ALICE_CALL, "To": to}
    signature = signature_for(files.auth_token, PUBLIC_URL + "/voice", params)
    root = twiml_of(app.test_client().post("/voice", data=params, headers={"X-Twilio-Signature": signature}))
    assert reason in said(root)
    assert root.find("Dial") is None
    app.extensions["shetphone"].store.close()


def test_a_client_removed_from_htpasswd_cannot_call(twilio_post, team_files, app):
    remove_users(app, team_files, "alice")
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": "+441595123456"}))
    assert "can no longer make calls" in said(root)


def test_inbound_rings_every_client_of_the_number(twilio_post, phone_ready):
    phone_ready("alice")
    phone_ready("bob")
    root = twiml_of(twilio_post("/voice", {**INBOUND, "To": "+441595000001"}))
    (dial,) = root
    assert dial.get("timeout") == "20"
    assert dial.get("action") == PUBLIC_URL + "/voice/dial-complete"
    assert [client.text for client in dial] == ["alice", "bob"]
    assert all(client.get("statusCallback") == PUBLIC_URL + "/voice/status#" + twiml.RETRIES for client in dial)


def test_a_member_removed_from_htpasswd_is_not_rung(twilio_post, team_files, app, phone_ready):
    phone_ready("alice")
    phone_ready("bob")
    remove_users(app, team_files, "bob")  # still listed for +441595000001 in the ini
    (dial,) = twiml_of(twilio_post("/voice", {**INBOUND, "To": "+441595000001"}))
    assert [client.text for client in dial] == ["alice"]


def test_with_nobody_left_to_ring_the_caller_goes_straight_to_voicemail(twilio_post, team_files, app):
    remove_users(app, team_files, "carol")  # the only member of +441595000004
    root = twiml_of(twilio_post("/voice", {**INBOUND, "To": "+441595000004"}))
    assert [child.tag for child in root] == ["Say", "Record", "Hangup"]  # no <Dial>, no ringing first
    record = root.find("Record")
    assert record.get("recordingStatusCallback") == PUBLIC_URL + "/voice/recording#" + twiml.RETRIES
    assert record.get("action") == PUBLIC_URL + "/voice/recorded"


def test_with_nobody_left_to_ring_and_no_voicemail_the_caller_is_told(app_with, team_files):
    app = app_with("voicemail = no")
    remove_users(app, team_files, "carol")
    params = {**INBOUND, "To": "+441595000004"}
    signature = signature_for(team_files.auth_token, PUBLIC_URL + "/voice", params)
    root = twiml_of(app.test_client().post("/voice", data=params, headers={"X-Twilio-Signature": signature}))
    assert "nobody can take your call" in said(root)


@pytest.mark.parametrize(
    ("to", "target"),
    [("+441595000002", "discord:123456789012345678"), ("+441595000003", "echo")],
)
def test_inbound_to_a_stream_target(twilio_post, settings, to, target):
    root = twiml_of(twilio_post("/voice", {**INBOUND, "To": to}))
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "wss://phone.example.test/media/stream"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters["target"] == target
    assert parameters["from"] == INBOUND["From"]
    # The bridge admits the stream with this, for this call and target only, for a few minutes.
    grant = stream_auth.verify(settings.secret_key, parameters["auth"], INBOUND["CallSid"], target)
    assert 0 < grant.expires - time.time() <= stream_auth.DEFAULT_TTL
    with pytest.raises(stream_auth.StreamAuthError):
        stream_auth.verify(settings.secret_key, parameters["auth"], "CA" + "9" * 32, target)
    with pytest.raises(stream_auth.StreamAuthError):
        stream_auth.verify("another key", parameters["auth"], INBOUND["CallSid"], target)


def test_anything_else_is_said_and_hung_up(twilio_post):
    assert "not in service" in said(twiml_of(twilio_post("/voice", {**INBOUND, "To": "+441595000099"})))


@pytest.mark.parametrize("outcome", ["no-answer", "busy", "failed"])
def test_dial_complete_unanswered_goes_to_voicemail(twilio_post, outcome):
    twilio_post("/voice", {**INBOUND, "To": "+441595000001"})
    root = twiml_of(twilio_post("/voice/dial-complete", {**INBOUND, "DialCallStatus": outcome}))
    assert [child.tag for child in root] == ["Say", "Record", "Hangup"]
    record = root.find("Record")
    assert record.get("recordingStatusCallback") == PUBLIC_URL + "/voice/recording#" + twiml.RETRIES
    assert record.get("maxLength") == "120"
    assert record.get("action") == PUBLIC_URL + "/voice/recorded"


def test_after_a_recording_twilio_is_told_to_hang_up(twilio_post):
    root = twiml_of(twilio_post("/voice/recorded", {**INBOUND, "RecordingSid": "RE" + "1" * 32,
                                                     "RecordingDuration": "7"}))
    assert [child.tag for child in root] == ["Hangup"]


def test_the_recorded_action_needs_twilios_signature(twilio_post):
    assert twilio_post("/voice/recorded", INBOUND, signature="forged").status_code == 403


@pytest.mark.parametrize("outcome", ["completed", "answered", "canceled"])
def test_dial_complete_answered_hangs_up(twilio_post, outcome):
    root = twiml_of(twilio_post("/voice/dial-complete", {**INBOUND, "DialCallStatus": outcome}))
    assert [child.tag for child in root] == ["Hangup"]


def test_status_callback_emits_to_the_numbers_room_only(app, client, twilio_post):
    socketio = app.extensions["socketio"]
    login(client, "alice")
    alice = socketio.test_client(app, flask_test_client=client)
    carol_http = app.test_client()
    login(carol_http, "carol")
    carol = socketio.test_client(app, flask_test_client=carol_http)
    assert alice.is_connected() and carol.is_connected()
    alice.emit("phone", {"ready": True})  # so the call rings her, rather than going to voicemail at once
    alice.get_received()
    carol.get_received()

    twilio_post("/voice", {**INBOUND, "To": "+441595000001"})
    child = {"CallSid": "CA" + "3" * 32, "ParentCallSid": INBOUND["CallSid"], "CallStatus": "ringing",
             "SequenceNumber": "0", "From": INBOUND["From"], "To": "client:alice", "Direction": "outbound-dial"}
    assert twilio_post("/voice/status", child).status_code == 204

    (event,) = alice.get_received()
    assert event["name"] == "call_status"
    payload = event["args"][0]
    assert payload["call_sid"] == child["CallSid"]
    assert payload["parent_call_sid"] == INBOUND["CallSid"]
    assert payload["number"] == "+441595000001"
    assert payload["direction"] == "inbound"
    assert payload["status"] == "ringing"
    assert carol.get_received() == []

    # a repeat changes nothing and emits nothing
    assert twilio_post("/voice/status", child).status_code == 204
    assert alice.get_received() == []


HUGE = "99999999999999999999"  # no database column holds it


def test_a_callback_with_numbers_too_large_to_store_is_still_recorded(app, client, twilio_post, caplog):
    twilio_post("/voice", {**INBOUND, "To": "+441595000001"})
    child = {"CallSid": "CA" + "3" * 32, "ParentCallSid": INBOUND["CallSid"], "CallStatus": "completed",
             "SequenceNumber": HUGE, "CallDuration": HUGE, "From": INBOUND["From"], "To": "client:alice"}
    assert twilio_post("/voice/status", child).status_code == 204
    recording = {**INBOUND, "RecordingSid": "RE" + "4" * 32, "RecordingStatus": "completed",
                 "RecordingDuration": HUGE, "RecordingUrl": "https://api.twilio.com/RE4"}
    assert twilio_post("/voice/recording", recording).status_code == 204
    assert not [record for record in caplog.records if record.exc_info]

    login(client, "alice")
    (call,) = client.get("/calls").get_json()["calls"]
    assert call["call_sid"] == INBOUND["CallSid"] and call["status"] == "completed"
    assert call["voicemail_url"] is not None


@pytest.mark.parametrize(("caller", "to"), [("+447700900123", "+441595000001"), ("client:alice", "+441595123456")])
def test_a_call_without_a_callsid_still_gets_its_twiml_and_is_not_logged(app, client, twilio_post, caller, to, caplog):
    for _ in range(2):  # the team's number (voicemail at once: nobody's phone is started), or Mum from alice
        root = twiml_of(twilio_post("/voice", {"From": caller, "To": to}))
        assert root[0].tag in ("Say", "Dial")
    assert [record.levelname for record in caplog.records if "without a CallSid" in record.getMessage()] == [
        "WARNING", "WARNING"]
    login(client, "alice")
    assert client.get("/calls").get_json()["calls"] == []  # no row keyed "" gathering every such request


def test_a_socket_without_a_session_is_refused(app, client):
    socketio = app.extensions["socketio"]
    anonymous = socketio.test_client(app, flask_test_client=client)
    assert not anonymous.is_connected()


def test_a_database_locked_too_long_answers_503_to_callbacks_and_calls_still_go_through(impatient_app,
                                                                                          team_files):
    from conftest import browser_with_phone, signature_for
    from store_helpers import sqlite_locked

    client = impatient_app.test_client()
    browser_with_phone(impatient_app, "alice")  # the first call rings her; bob's phone is not started

    def post(path, params):
        signature = signature_for(team_files.auth_token, PUBLIC_URL + path, params)
        return client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    store = impatient_app.extensions["shetphone"].store
    assert post("/voice", {**INBOUND, "To": "+441595000001"}).status_code == 200
    leg = {"CallSid": "CA" + "3" * 32, "ParentCallSid": INBOUND["CallSid"], "CallStatus": "ringing",
           "SequenceNumber": "0", "From": INBOUND["From"], "To": "client:alice", "Direction": "outbound-dial"}
    recording = {"CallSid": INBOUND["CallSid"], "RecordingSid": "RE" + "1" * 32, "RecordingStatus": "completed",
                 "RecordingDuration": "4", "RecordingUrl": "https://api.twilio.com/RE1"}
    with sqlite_locked(store.database):  # another process writes, and takes its time
        assert post("/voice/status", leg).status_code == 503  # Twilio retries a 5xx
        assert post("/voice/recording", recording).status_code == 503
        # The caller is not kept waiting on the log: the call goes ahead unlogged, and rings every member
        # (bob's phone is not started, but presence is not waited for when the log could not be written).
        second = {"From": "+447700900456", "CallSid": "CA" + "4" * 32, "To": "+441595000001"}
        assert [child.tag for child in twiml_of(post("/voice", second))[0]] == ["Client", "Client"]
        voicemail = twiml_of(post("/voice/dial-complete", {**INBOUND, "DialCallStatus": "no-answer"}))
        assert "Record" in [child.tag for child in voicemail]
    listed = store.calls.calls_for(["+441595000001"], None)
    assert [(c["call_sid"], c["status"], c["recording_sid"]) for c in listed] == [
        (INBOUND["CallSid"], "initiated", None)
    ]
    # Twilio's retries, once the lock is gone, are applied.
    assert post("/voice/status", leg).status_code == 204
    assert post("/voice/recording", recording).status_code == 204
    (call,) = store.calls.calls_for(["+441595000001"], None)
    assert (call["status"], call["recording_sid"]) == ("ringing", recording["RecordingSid"])


def browser_of(app, name: str):
    """A logged-in browser's Socket.IO connection (Flask-SocketIO's test client)."""
    http = app.test_client()
    login(http, name)
    browser = app.extensions["socketio"].test_client(app, flask_test_client=http)
    assert browser.is_connected()
    browser.get_received()  # catch-up, if any
    return browser, http


def test_a_call_whose_start_could_not_be_logged_is_listed_and_announced_from_its_callbacks(impatient_app,
                                                                                            team_files):
    from conftest import signature_for
    from store_helpers import sqlite_locked

    client = impatient_app.test_client()

    def post(path, params):
        signature = signature_for(team_files.auth_token, PUBLIC_URL + path, params)
        return client.post(path, data=params, headers={"X-Twilio-Signature": signature})

    browser, alice = browser_of(impatient_app, "alice")
    call = {**INBOUND, "To": "+441595000001"}
    with sqlite_locked(impatient_app.extensions["shetphone"].store.database):
        assert [leg.tag for leg in twiml_of(post("/voice", call))[0]] == ["Client", "Client"]
    assert alice.get("/calls").get_json() == {"calls": []}  # its row was never written
    root = {"CallSid": INBOUND["CallSid"], "CallStatus": "in-progress", "SequenceNumber": "1",
            "From": INBOUND["From"], "To": "+441595000001", "Direction": "inbound"}
    assert post("/voice/status", root).status_code == 204
    leg = {"CallSid": "CA" + "5" * 32, "ParentCallSid": INBOUND["CallSid"], "CallStatus": "ringing",
           "SequenceNumber": "0", "From": INBOUND["From"], "To": "client:alice", "Direction": "outbound-dial"}
    assert post("/voice/status", leg).status_code == 204
    heard = [(e["args"][0]["call_sid"], e["args"][0]["status"]) for e in browser.get_received()
             if e["name"] == "call_status"]
    assert heard == [(INBOUND["CallSid"], "in-progress"), (leg["CallSid"], "ringing")]
    (listed,) = alice.get("/calls").get_json()["calls"]
    assert (listed["call_sid"], listed["direction"], listed["number"], listed["from"]) == (
        INBOUND["CallSid"], "inbound", "+441595000001", INBOUND["From"])


def test_a_leg_that_lost_its_final_callback_stops_ringing_in_the_browsers(app, twilio_post):
    from shetphone import realtime

    browser, alice = browser_of(app, "alice")
    assert twilio_post("/voice", {**INBOUND, "To": "+441595000001"}).status_code == 200
    ten_minutes_ago = time.strftime("%a, %d %b %Y %H:%M:%S +0000", time.gmtime(time.time() - 600))
    leg = {"CallSid": "CA" + "6" * 32, "ParentCallSid": INBOUND["CallSid"], "CallStatus": "ringing",
           "SequenceNumber": "0", "From": INBOUND["From"], "To": "client:alice", "Timestamp": ten_minutes_ago}
    assert twilio_post("/voice/status", leg).status_code == 204
    browser.get_received()
    with app.app_context():
        assert realtime.close_stale_legs(app.extensions["shetphone"]) == 1
        assert realtime.close_stale_legs(app.extensions["shetphone"]) == 0
    heard = [(e["args"][0]["call_sid"], e["args"][0]["status"]) for e in browser.get_received()]
    assert heard == [(leg["CallSid"], "no-answer")]
    # A browser that reconnects is no longer told the call rings.
    again = app.extensions["socketio"].test_client(app, flask_test_client=alice)
    assert again.is_connected() and again.get_received() == []


def test_twilio_is_asked_to_retry_a_callback_the_app_answered_503(impatient_app, team_files, standin):
    """The recording callback meets a locked database: 503, and Twilio (the stand-in, reading the
    URL's connection overrides) tries again, three more times, before giving up on it."""
    from store_helpers import sqlite_locked
    from twilio_standin import FlaskCallbacks

    standin.accept(team_files.environ["TWILIO_ACCOUNT_SID"], team_files.auth_token)
    standin.connect(FlaskCallbacks(impatient_app.test_client(), PUBLIC_URL), PUBLIC_URL)
    root = standin.incoming_call(INBOUND["From"], "+441595000001")  # nobody's phone is started: voicemail
    standin.run()
    with sqlite_locked(impatient_app.extensions["shetphone"].store.database):
        standin.finish_recording(root.sid, seconds=3)
        standin.run()
    (refused,) = standin.deliveries_to("/voice/recording")
    assert (refused.status, refused.attempts) == (503, 4)
    assert refused.url.endswith("#" + twiml.RETRIES)


# ------------------------------------------------------- values no Twilio request carries (on both backends)
#
# Signed, so Twilio's, yet holding what no real call has: SQLite would keep it, PostgreSQL refuse it (a
# column's width, a NUL byte in text) on every retry. Each is answered as done, with one line naming the
# field, and nothing of it stored.

TEAM = "+441595000001"
LEG = {"CallSid": "CA" + "3" * 32, "ParentCallSid": INBOUND["CallSid"], "CallStatus": "ringing",
       "SequenceNumber": "0", "From": INBOUND["From"], "To": "client:alice", "Direction": "outbound-dial"}
RECORDING = {"CallSid": INBOUND["CallSid"], "RecordingSid": "RE" + "4" * 32, "RecordingStatus": "completed",
             "RecordingDuration": "4", "RecordingUrl": "https://api.twilio.com/Recordings/RE" + "4" * 32}
NUL_CALLER = "+44770090\x00123"


def warnings_of(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def one_line_naming(caplog, field: str) -> str:
    (line,) = warnings_of(caplog)
    assert f"{field} " in line and "\x00" not in line and len(line) < 250, line
    return line


@pytest.fixture
def twilio_on_each_database(app_on_each_database, team_files):
    """Signed posts to the app on SQLite, then on PostgreSQL, with a call to alice's number in the log."""
    post = twilio_poster(app_on_each_database.test_client(), team_files.auth_token)
    assert post("/voice", {**INBOUND, "To": TEAM}).status_code == 200  # nobody's phone: voicemail at once
    return post


def logged_calls(app) -> list[dict]:
    return app.extensions["shetphone"].store.calls.calls_for([TEAM], None)


def in_progress(app) -> list[dict]:
    return app.extensions["shetphone"].store.calls.calls_in_progress([TEAM])


@pytest.mark.parametrize(("field", "value"), [
    ("CallSid", "CA" + "5" * 70),
    ("CallSid", "CA" + "5" * 32 + "\n"),
    ("CallSid", "CA5"),
    ("ParentCallSid", INBOUND["CallSid"] + "\x00"),
    ("From", NUL_CALLER),
    ("To", "client:" + "a" * 300),
])
def test_a_status_callback_no_twilio_request_carries_is_204_with_one_line_and_changes_nothing(
        app_on_each_database, twilio_on_each_database, caplog, field, value):
    app, post = app_on_each_database, twilio_on_each_database
    assert post("/voice/status", LEG).status_code == 204
    before = logged_calls(app), in_progress(app)
    caplog.clear()
    form = {**LEG, "CallSid": "CA" + "5" * 32, "CallStatus": "in-progress", "SequenceNumber": "1", field: value}
    assert post("/voice/status", form).status_code == 204  # not 503: Twilio would retry it for nothing
    one_line_naming(caplog, field)
    assert (logged_calls(app), in_progress(app)) == before


@pytest.mark.parametrize(("field", "value"), [("CallSid", "CA" + "7" * 70), ("CallSid", "CA" + "7" * 31 + "x"),
                                              ("From", NUL_CALLER), ("From", "sip:" + "a" * 300 + "@example.test")])
@pytest.mark.parametrize("to", [TEAM, "+441595000002"])  # a ring group, a media stream
def test_a_call_no_twilio_request_carries_goes_ahead_unlogged_with_one_line(
        app_on_each_database, twilio_on_each_database, caplog, field, value, to):
    app, post = app_on_each_database, twilio_on_each_database
    before = logged_calls(app)
    caplog.clear()
    root = twiml_of(post("/voice", {"CallSid": "CA" + "7" * 32, "From": INBOUND["From"], "To": to, field: value}))
    assert root[0].tag in ("Say", "Record", "Connect")  # voicemail at once (nobody's phone), or the stream
    one_line_naming(caplog, field)
    assert logged_calls(app) == before


def test_a_call_whose_known_callsid_comes_again_with_a_nul_caller_keeps_its_row(
        app_on_each_database, twilio_on_each_database, caplog):
    app, post = app_on_each_database, twilio_on_each_database
    before = logged_calls(app)
    caplog.clear()
    twiml_of(post("/voice", {**INBOUND, "From": NUL_CALLER, "To": TEAM}))
    one_line_naming(caplog, "From")
    assert logged_calls(app) == before and before[0]["from"] == INBOUND["From"]


@pytest.mark.parametrize(("field", "value"), [
    ("RecordingSid", "RE" + "4" * 32 + "\n"),
    ("RecordingSid", "RE" + "4" * 70),
    ("RecordingSid", "nonsense"),
    ("RecordingUrl", "https://api.twilio.com/" + "a" * 1100),
    ("RecordingUrl", "https://api.twilio.com/\x00"),
    ("CallSid", INBOUND["CallSid"] + "\x00"),
])
def test_a_recording_callback_no_twilio_request_carries_is_204_with_one_line_and_stores_nothing(
        app_on_each_database, twilio_on_each_database, caplog, field, value):
    app, post = app_on_each_database, twilio_on_each_database
    caplog.clear()
    assert post("/voice/recording", {**RECORDING, field: value}).status_code == 204
    one_line_naming(caplog, field)
    (call,) = logged_calls(app)
    assert call["recording_sid"] is None
    assert post("/voice/recording", RECORDING).status_code == 204  # the real one still is stored
    assert logged_calls(app)[0]["recording_sid"] == RECORDING["RecordingSid"]


def test_a_transcript_with_a_nul_byte_is_kept_without_it(app_on_each_database, twilio_on_each_database, caplog):
    app, post = app_on_each_database, twilio_on_each_database
    assert post("/voice/recording", RECORDING).status_code == 204
    transcript = {"CallSid": INBOUND["CallSid"], "RecordingSid": RECORDING["RecordingSid"],
                  "TranscriptionSid": "TR" + "1" * 32, "TranscriptionStatus": "completed",
                  "TranscriptionText": "Call me\x00 back."}
    assert post("/voice/transcription", transcript).status_code == 204
    assert warnings_of(caplog) == []
    assert logged_calls(app)[0]["voicemail_transcript"] == "Call me back."


def test_a_dial_outcome_of_a_callsid_no_twilio_request_carries_still_gets_voicemail_with_one_line(
        app_on_each_database, twilio_on_each_database, caplog):
    app, post = app_on_each_database, twilio_on_each_database
    before = logged_calls(app)
    caplog.clear()
    root = twiml_of(post("/voice/dial-complete", {**INBOUND, "CallSid": INBOUND["CallSid"] + "\x00",
                                                  "DialCallStatus": "completed"}))
    assert [child.tag for child in root] == ["Hangup"]
    one_line_naming(caplog, "CallSid")
    assert logged_calls(app) == before


@pytest.mark.parametrize(("path", "form", "store_part", "method"), [
    ("/voice/status", LEG, "calls", "record_status"),
    ("/voice/recording", RECORDING, "calls", "record_voicemail"),
    ("/voice/transcription", {"RecordingSid": RECORDING["RecordingSid"], "TranscriptionStatus": "completed",
                              "TranscriptionText": "Call me back."}, "outbox", "transcribed"),
])
def test_a_callback_whose_value_the_database_refused_is_204_not_a_503_to_retry(app, twilio_post, caplog,
                                                                               monkeypatch, path, form,
                                                                               store_part, method):
    """Whatever the checks before the store miss: a value the database refuses is refused on every retry."""
    from shetphone.store import StoreRefused

    def refused(*args, **kwargs):
        raise StoreRefused("database postgresql://db/phone: value too long for type character varying(64)")

    monkeypatch.setattr(getattr(app.extensions["shetphone"].store, store_part), method, refused)
    assert twilio_post(path, form).status_code == 204
    (line,) = warnings_of(caplog)
    assert "ignored" in line and "value too long" in line
