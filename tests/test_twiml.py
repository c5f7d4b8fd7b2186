"""Each TwiML document, parsed as XML and checked element by element."""

import xml.etree.ElementTree as ET

from shetphone import twiml

STATUS = "https://phone.example.test/voice/status"
EVENTS = "initiated ringing answered completed"


def parse(document: str) -> ET.Element:
    root = ET.fromstring(document)
    assert root.tag == "Response"
    return root


def test_outbound_dial():
    root = parse(twiml.outbound_dial("+441595123456", "+441595000001", STATUS))
    (dial,) = root
    assert dial.tag == "Dial"
    assert dial.attrib == {"callerId": "+441595000001", "answerOnBridge": "true"}
    (number,) = dial
    assert number.tag == "Number" and number.text == "+441595123456"
    assert number.attrib == {"statusCallback": STATUS, "statusCallbackEvent": EVENTS}


def test_ring_group_rings_every_client():
    action = "https://phone.example.test/voice/dial-complete"
    root = parse(twiml.ring_group(("alice", "bob"), 25, action, STATUS))
    (dial,) = root
    assert dial.attrib == {"timeout": "25", "action": action, "answerOnBridge": "true"}
    assert [(c.tag, c.text) for c in dial] == [("Client", "alice"), ("Client", "bob")]
    for client in dial:
        assert client.attrib == {"statusCallback": STATUS, "statusCallbackEvent": EVENTS}


def test_media_stream_with_parameters():
    root = parse(twiml.media_stream("wss://phone.example.test/media/stream", {"target": "echo", "from": "+44"}))
    (connect,) = root
    (stream,) = connect
    assert connect.tag == "Connect" and stream.tag == "Stream"
    assert stream.attrib == {"url": "wss://phone.example.test/media/stream"}
    assert [(p.tag, p.attrib) for p in stream] == [
        ("Parameter", {"name": "target", "value": "echo"}),
        ("Parameter", {"name": "from", "value": "+44"}),
    ]


def test_refusal_says_why_then_hangs_up_and_never_dials():
    root = parse(twiml.refusal("Sorry, calls to that country are not allowed."))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "Sorry, calls to that country are not allowed."


def test_refusal_escapes_xml():
    root = parse(twiml.refusal("<Dial>+1</Dial> & more"))
    assert [child.tag for child in root] == ["Say", "Hangup"]
    assert root[0].text == "<Dial>+1</Dial> & more"


def test_voicemail_with_spoken_greeting():
    recording = "https://phone.example.test/voice/recording"
    recorded = "https://phone.example.test/voice/recorded"
    root = parse(twiml.voicemail("Leave a message.", None, recording, recorded))
    assert [child.tag for child in root] == ["Say", "Record", "Hangup"]
    assert root[0].text == "Leave a message."
    assert root[1].attrib == {
        "action": recorded,  # else Twilio fetches the <Dial>'s action again after the recording
        "maxLength": "120",
        "playBeep": "true",
        "recordingStatusCallback": recording,
        "recordingStatusCallbackEvent": "completed",
    }


def test_voicemail_with_greeting_audio():
    root = parse(twiml.voicemail("unused", "https://cdn.example.test/greeting.mp3", "https://x/voice/recording",
                                 "https://x/voice/recorded"))
    assert [child.tag for child in root] == ["Play", "Record", "Hangup"]
    assert root[0].text == "https://cdn.example.test/greeting.mp3"
    assert root[1].get("action") == "https://x/voice/recorded"


def test_hangup():
    assert [child.tag for child in parse(twiml.hangup())] == ["Hangup"]


def test_ring_legs_rings_browsers_and_phones_in_one_dial_with_a_caller_id():
    action = "https://phone.example.test/voice/dial-complete"
    root = parse(twiml.ring_legs(("alice",), ("+447911123401", "+447911123402"), "+441595123456", 20, action,
                                 STATUS))
    (dial,) = root
    assert dial.attrib == {"timeout": "20", "action": action, "answerOnBridge": "true", "callerId": "+441595123456"}
    assert [(leg.tag, leg.text) for leg in dial] == [
        ("Client", "alice"), ("Number", "+447911123401"), ("Number", "+447911123402"),
    ]
    for leg in dial:
        assert leg.attrib == {"statusCallback": STATUS, "statusCallbackEvent": EVENTS}


def test_outbound_dial_with_an_action_lets_the_browser_leg_follow_into_a_conference():
    action = "https://phone.example.test/voice/dial-complete"
    (dial,) = parse(twiml.outbound_dial("+441595123456", "+441595000001", STATUS, action_url=action))
    assert dial.attrib == {"callerId": "+441595000001", "answerOnBridge": "true", "action": action}


def test_conference_leg():
    callback = "https://phone.example.test/voice/conference"
    (dial,) = parse(twiml.conference("shetphone-CA1", callback, "outside", end_on_exit=True))
    assert dial.tag == "Dial" and dial.attrib == {}
    (conference,) = dial
    assert conference.tag == "Conference" and conference.text == "shetphone-CA1"
    assert conference.attrib == {
        "beep": "false", "startConferenceOnEnter": "true", "endConferenceOnExit": "true",
        "statusCallback": callback, "statusCallbackEvent": "start end join leave hold",
        "participantLabel": "outside",
    }
    (member,) = parse(twiml.conference("shetphone-CA1", callback, "alice", end_on_exit=False))
    assert member[0].attrib["endConferenceOnExit"] == "false"
    assert member[0].attrib["participantLabel"] == "alice"
