"""The webhooks: TwiML for every case of SPEC §3, and the events they cause."""

import xml.etree.ElementTree as ET

import pytest
from conftest import PASSWORDS, PUBLIC_URL, login

ALICE_CALL = {"From": "client:alice", "CallSid": "CA" + "1" * 32}
INBOUND = {"From": "+447700900123", "CallSid": "CA" + "2" * 32}


def twiml_of(response) -> ET.Element:
    assert response.status_code == 200
    assert response.mimetype == "text/xml"
    return ET.fromstring(response.data)


def said(root: ET.Element) -> str:
    assert [child.tag for child in root] == ["Say", "Hangup"]
    return root[0].text


def test_outbound_call_is_dialled_in_e164_with_the_chosen_caller_id(twilio_post):
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": "01595 123456"}))
    (dial,) = root
    assert dial.tag == "Dial"
    assert dial.get("callerId") == "+441595000001"
    assert dial.get("answerOnBridge") == "true"
    (number,) = dial
    assert number.text == "+441595123456"
    assert number.get("statusCallback") == PUBLIC_URL + "/voice/status"
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


def test_a_client_removed_from_htpasswd_cannot_call(twilio_post, team_files, app):
    team_files.write_users({n: p for n, p in PASSWORDS.items() if n != "alice"})
    with app.app_context():
        app.extensions["shetphone"].users.refresh()
    root = twiml_of(twilio_post("/voice", {**ALICE_CALL, "To": "+441595123456"}))
    assert "can no longer make calls" in said(root)


def test_inbound_rings_every_client_of_the_number(twilio_post):
    root = twiml_of(twilio_post("/voice", {**INBOUND, "To": "+441595000001"}))
    (dial,) = root
    assert dial.get("timeout") == "20"
    assert dial.get("action") == PUBLIC_URL + "/voice/dial-complete"
    assert [client.text for client in dial] == ["alice", "bob"]
    assert all(client.get("statusCallback") == PUBLIC_URL + "/voice/status" for client in dial)


@pytest.mark.parametrize(
    ("to", "target"),
    [("+441595000002", "discord:123456789012345678"), ("+441595000003", "echo")],
)
def test_inbound_to_a_stream_target(twilio_post, to, target):
    root = twiml_of(twilio_post("/voice", {**INBOUND, "To": to}))
    stream = root.find("Connect/Stream")
    assert stream.get("url") == "wss://phone.example.test/media/stream"
    parameters = {p.get("name"): p.get("value") for p in stream.findall("Parameter")}
    assert parameters["target"] == target
    assert parameters["from"] == INBOUND["From"]


def test_anything_else_is_said_and_hung_up(twilio_post):
    assert "not in service" in said(twiml_of(twilio_post("/voice", {**INBOUND, "To": "+441595000099"})))


@pytest.mark.parametrize("outcome", ["no-answer", "busy", "failed"])
def test_dial_complete_unanswered_goes_to_voicemail(twilio_post, outcome):
    twilio_post("/voice", {**INBOUND, "To": "+441595000001"})
    root = twiml_of(twilio_post("/voice/dial-complete", {**INBOUND, "DialCallStatus": outcome}))
    assert [child.tag for child in root] == ["Say", "Record", "Hangup"]
    record = root.find("Record")
    assert record.get("recordingStatusCallback") == PUBLIC_URL + "/voice/recording"
    assert record.get("maxLength") == "120"


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


def test_a_socket_without_a_session_is_refused(app, client):
    socketio = app.extensions["socketio"]
    anonymous = socketio.test_client(app, flask_test_client=client)
    assert not anonymous.is_connected()


def test_a_database_locked_too_long_answers_503_to_callbacks_and_calls_still_go_through(impatient_app,
                                                                                          team_files):
    from conftest import signature_for
    from store_helpers import sqlite_locked

    client = impatient_app.test_client()

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
        # The caller is not kept waiting on the log: the call goes ahead unlogged.
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
