"""The Twilio stand-in's own behaviour, which the integration tests rely on (tests/twilio_standin.py).

Each test names the Twilio behaviour it checks; the stand-in's docstring cites the pages.
"""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Callable
from urllib.parse import urlsplit

import numpy as np
import pytest
import requests
import socketio
from conftest import PUBLIC_URL, live_login, login, make_team_files, phone_started_on, start_server
from twilio.request_validator import RequestValidator
from twilio_standin import FlaskCallbacks, HttpCallbacks, TwilioStandIn

from shetphone import twiml

CALLER = "+447700900123"
TEAM = "+441595000001"
VOICE = PUBLIC_URL + "/voice"
ACTION = PUBLIC_URL + "/voice/dial-complete"
STATUS = PUBLIC_URL + "/voice/status"
CONFERENCE = PUBLIC_URL + "/voice/conference"
RECORDING = PUBLIC_URL + "/voice/recording"


class ScriptedApp:
    """The app's side, scripted: checks every signature as the app would, answers TwiML by path."""

    def __init__(self, auth_token: str, answers: dict[str, str | Callable[[dict], str]]):
        self.validator = RequestValidator(auth_token)
        self.answers = answers
        self.received: list[tuple[str, dict]] = []

    def post(self, url, params, headers):
        assert self.validator.validate(url, params, headers["X-Twilio-Signature"]), f"bad signature for {url}"
        path = urlsplit(url).path
        self.received.append((path, dict(params)))
        answer = self.answers.get(path)
        if answer is None:
            return 204, ""
        return 200, answer(params) if callable(answer) else answer

    def posts(self, path: str) -> list[dict]:
        return [params for got, params in self.received if got == path]

    def conference_events(self) -> list[tuple[str, str | None]]:
        return [(p["StatusCallbackEvent"], p.get("ParticipantLabel")) for p in self.posts("/voice/conference")]


def ring_group(*clients: str) -> str:
    return twiml.ring_group(clients, 20, ACTION, STATUS)


def conference_leg(root: str, label: str, outside: bool) -> str:
    return twiml.conference(f"shetphone-{root}", CONFERENCE, label, end_on_exit=outside)


@pytest.fixture
def app_side(standin):
    app = ScriptedApp(standin.auth_token, {"/voice": ring_group("alice", "bob")})
    standin.connect(app, PUBLIC_URL)
    return app


def rest(standin, method: str, resource: str, **fields) -> requests.Response:
    url = f"{standin.url}/2010-04-01/Accounts/{standin.account_sid}/{resource}"
    return requests.request(method, url, data=fields, auth=(standin.account_sid, standin.auth_token), timeout=5)


def answered_incoming_call(standin, app_side):
    """A caller rang the team number; alice's browser answered: the parent and its bridged child."""
    parent = standin.incoming_call(CALLER, TEAM)
    standin.run()
    alice = next(c for c in standin.children_of(parent.sid) if c.to == "client:alice")
    standin.answer(alice.sid)
    standin.run()
    return parent, alice


# ----------------------------------------------------------------- webhooks, signed


def test_every_request_to_the_app_is_signed_as_twilio_signs(standin, app_side):
    answered_incoming_call(standin, app_side)
    assert len(app_side.received) >= 5  # /voice, then ringing and answered callbacks, each validated on receipt
    url, params = standin.delivered[0].url, standin.delivered[0].params
    forged = RequestValidator("not-the-auth-token").compute_signature(url, params)
    assert not app_side.validator.validate(url, params, forged)  # the check above could fail


def test_callbacks_wait_for_run_in_manual_mode(standin, app_side):
    standin.incoming_call(CALLER, TEAM)
    assert app_side.received == []
    standin.run()
    assert [path for path, _ in app_side.received][:1] == ["/voice"]


# ------------------------------------------------------------------------ <Dial>


def test_an_incoming_call_asks_the_voice_url_then_rings_each_client_as_a_child_leg(standin, app_side):
    parent = standin.incoming_call(CALLER, TEAM)
    standin.run()
    (voice,) = app_side.posts("/voice")
    assert {k: voice[k] for k in ("CallSid", "From", "To", "CallStatus", "Direction", "AccountSid")} == {
        "CallSid": parent.sid, "From": CALLER, "To": TEAM, "CallStatus": "ringing", "Direction": "inbound",
        "AccountSid": standin.account_sid}
    children = standin.children_of(parent.sid)
    assert sorted(c.to for c in children) == ["client:alice", "client:bob"]
    for child in children:
        statuses = [(p["CallStatus"], p["SequenceNumber"], p["ParentCallSid"])
                    for p in app_side.posts("/voice/status") if p["CallSid"] == child.sid]
        assert statuses == [("initiated", "0", parent.sid), ("ringing", "1", parent.sid)]
        assert all(p["From"] == CALLER for p in app_side.posts("/voice/status"))


def test_the_first_to_answer_is_bridged_and_the_others_are_canceled(standin, app_side):
    parent, alice = answered_incoming_call(standin, app_side)
    (bob,) = [c for c in standin.children_of(parent.sid) if c.to == "client:bob"]
    assert (alice.status, bob.status, parent.status) == ("in-progress", "canceled", "in-progress")
    assert [p["CallStatus"] for p in app_side.posts("/voice/status") if p["CallSid"] == alice.sid][-1] == "in-progress"
    assert [p["CallStatus"] for p in app_side.posts("/voice/status") if p["CallSid"] == bob.sid][-1] == "canceled"


def test_nobody_answering_asks_the_dial_action_and_runs_the_voicemail_it_answers(standin, app_side):
    app_side.answers["/voice/dial-complete"] = twiml.voicemail("Leave a message.", None, RECORDING,
                                                               PUBLIC_URL + "/voice/recorded")
    parent = standin.incoming_call(CALLER, TEAM)
    standin.run()
    standin.no_answer(parent.sid)  # the <Dial> timed out
    standin.run()
    assert {c.status for c in standin.children_of(parent.sid)} == {"no-answer"}
    (action,) = app_side.posts("/voice/dial-complete")
    assert (action["DialCallStatus"], action["CallSid"]) == ("no-answer", parent.sid)
    assert standin.call(parent.sid).heard == ["say:Leave a message."]
    recording_sid = standin.finish_recording(parent.sid, audio=b"ID3 message", seconds=7)
    standin.run()
    (recorded,) = app_side.posts("/voice/recording")
    assert (recorded["RecordingSid"], recorded["RecordingStatus"], recorded["RecordingDuration"]) == (
        recording_sid, "completed", "7")
    assert recorded["RecordingUrl"].endswith(f"/Recordings/{recording_sid}")
    assert app_side.posts("/voice/recorded")[0]["RecordingDuration"] == "7"
    assert standin.call(parent.sid).status == "completed"  # the action's answer was empty: hung up
    media = requests.get(recorded["RecordingUrl"] + ".mp3", auth=(standin.account_sid, standin.auth_token), timeout=5)
    assert media.content == b"ID3 message" and media.headers["Content-Type"] == "audio/mpeg"


def test_a_recording_made_with_transcribe_is_transcribed_when_the_test_says(standin, app_side):
    transcription = PUBLIC_URL + "/voice/transcription"
    app_side.answers["/voice"] = twiml.voicemail("Leave a message.", None, RECORDING, PUBLIC_URL + "/voice/recorded",
                                                 transcription)
    parent = standin.incoming_call(CALLER, TEAM)
    standin.run()
    recording_sid = standin.finish_recording(parent.sid, seconds=4)
    standin.run()
    assert app_side.posts("/voice/transcription") == []  # it takes Twilio a while
    standin.transcribe(recording_sid, "Call me back.")
    standin.transcribe(recording_sid, "", status="failed")
    standin.run()
    done, failed = app_side.posts("/voice/transcription")
    assert (done["RecordingSid"], done["CallSid"], done["TranscriptionStatus"], done["TranscriptionText"]) == (
        recording_sid, parent.sid, "completed", "Call me back.")
    assert done["TranscriptionSid"].startswith("TR") and done["RecordingUrl"].endswith(recording_sid)
    assert failed["TranscriptionStatus"] == "failed"
    plain = standin.incoming_call(CALLER, TEAM)
    app_side.answers["/voice"] = twiml.voicemail("Hi.", None, RECORDING, PUBLIC_URL + "/voice/recorded")
    standin.run()
    untranscribed = standin.finish_recording(plain.sid)
    with pytest.raises(AssertionError, match="not recorded with transcribe"):
        standin.transcribe(untranscribed, "Nothing to see.")


def test_a_child_redirected_by_rest_ends_the_parents_dial_which_asks_its_action_with_completed(standin, app_side):
    parent, alice = answered_incoming_call(standin, app_side)
    app_side.answers["/voice/dial-complete"] = conference_leg(parent.sid, "outside", outside=True)
    moved = rest(standin, "POST", f"Calls/{alice.sid}.json", Twiml=conference_leg(parent.sid, "alice", False))
    assert moved.status_code == 200 and moved.json()["sid"] == alice.sid
    standin.run()
    (action,) = app_side.posts("/voice/dial-complete")
    assert (action["DialCallStatus"], action["DialCallSid"], action["CallSid"]) == ("completed", alice.sid, parent.sid)
    conference = standin.conference_named(f"shetphone-{parent.sid}")
    assert set(conference.participants) == {parent.sid, alice.sid}
    assert app_side.conference_events() == [("participant-join", "alice"), ("conference-start", None),
                                            ("participant-join", "outside")]
    events = app_side.posts("/voice/conference")
    assert {e["ConferenceSid"] for e in events} == {conference.sid}
    assert {e["FriendlyName"] for e in events} == {f"shetphone-{parent.sid}"}
    assert [int(e["SequenceNumber"]) for e in events] == [1, 2, 3]
    assert events[2]["CallSid"] == parent.sid and events[2]["Hold"] == "false"
    assert events[2]["EndConferenceOnExit"] == "true"
    assert alice.status == "in-progress" and parent.status == "in-progress"  # moved, not dropped


def test_a_parent_redirected_by_rest_drops_its_child_and_still_asks_its_action(standin, app_side):
    parent, alice = answered_incoming_call(standin, app_side)
    rest(standin, "POST", f"Calls/{parent.sid}.json", Twiml="<Response><Say>Bye</Say></Response>")
    standin.run()
    assert alice.status == "completed"
    assert app_side.posts("/voice/dial-complete")[0]["DialCallStatus"] == "completed"
    assert standin.call(parent.sid).heard == ["say:Bye"] and parent.status == "completed"


def test_the_app_failing_a_twiml_request_ends_the_call_as_twilio_does(standin):
    app = ScriptedApp(standin.auth_token, {})
    app.post = lambda url, params, headers: (500, "oops")
    standin.connect(app, PUBLIC_URL)
    call = standin.incoming_call(CALLER, TEAM)
    standin.run()
    assert call.heard == ["application-error"] and not call.active


# ------------------------------------------------------------------- conferences


def conference_of_two(standin, app_side):
    parent, alice = answered_incoming_call(standin, app_side)
    app_side.answers["/voice/dial-complete"] = conference_leg(parent.sid, "outside", outside=True)
    rest(standin, "POST", f"Calls/{alice.sid}.json", Twiml=conference_leg(parent.sid, "alice", False))
    standin.run()
    return parent, alice, standin.conference_named(f"shetphone-{parent.sid}")


def test_hold_and_unhold_are_told_and_the_held_party_hears_the_hold_music(standin, app_side):
    parent, _, conference = conference_of_two(standin, app_side)
    held = rest(standin, "POST", f"Conferences/{conference.sid}/Participants/{parent.sid}.json", Hold="true")
    assert held.json()["hold"] is True
    rest(standin, "POST", f"Conferences/{conference.sid}/Participants/{parent.sid}.json", Hold="false")
    rest(standin, "POST", f"Conferences/{conference.sid}/Participants/{parent.sid}.json", Hold="true",
         HoldUrl="https://phone.example.test/static/hold.mp3")
    standin.run()
    assert [(e["StatusCallbackEvent"], e["Hold"]) for e in app_side.posts("/voice/conference")[3:]] == [
        ("participant-hold", "true"), ("participant-unhold", "false"), ("participant-hold", "true")]
    assert parent.heard == ["hold:twilio-default-hold-music", "hold:https://phone.example.test/static/hold.mp3"]


def test_a_participant_rung_by_rest_joins_when_answered(standin, app_side):
    _, _, conference = conference_of_two(standin, app_side)
    created = rest(standin, "POST", f"Conferences/{conference.sid}/Participants.json", From=TEAM, To="client:bob",
                   Label="bob", Timeout="20", StatusCallback=STATUS, StatusCallbackEvent=["initiated", "ringing",
                                                                                          "answered", "completed"])
    assert created.status_code == 201
    body = created.json()
    assert (body["label"], body["status"], body["conference_sid"]) == ("bob", "queued", conference.sid)
    bob = standin.call(body["call_sid"])
    assert (bob.to, bob.from_, bob.status, bob.parent_sid) == ("client:bob", TEAM, "ringing", None)
    standin.answer(bob.sid)
    standin.run()
    assert app_side.conference_events()[-1] == ("participant-join", "bob")
    assert [p["CallStatus"] for p in app_side.posts("/voice/status") if p["CallSid"] == bob.sid] == [
        "initiated", "ringing", "in-progress"]
    listed = rest(standin, "GET", f"Conferences/{conference.sid}/Participants.json").json()["participants"]
    assert {p["label"] for p in listed} == {"outside", "alice", "bob"}


def test_a_participant_who_does_not_answer_leaves_with_its_call_status(standin, app_side):
    _, _, conference = conference_of_two(standin, app_side)
    body = rest(standin, "POST", f"Conferences/{conference.sid}/Participants.json", From=TEAM, To="client:bob",
                Label="bob", StatusCallback=STATUS, StatusCallbackEvent="initiated ringing answered completed").json()
    standin.no_answer(body["call_sid"])
    standin.run()
    (left,) = [e for e in app_side.posts("/voice/conference") if e["StatusCallbackEvent"] == "participant-leave"]
    assert (left["CallSid"], left["ParticipantLabel"], left["ParticipantCallStatus"]) == (
        body["call_sid"], "bob", "no-answer")
    assert [p["CallStatus"] for p in app_side.posts("/voice/status") if p["CallSid"] == body["call_sid"]][-1] == \
        "no-answer"


def test_a_participant_removed_goes_on_after_its_dial_and_its_call_ends(standin, app_side):
    _, alice, conference = conference_of_two(standin, app_side)
    removed = rest(standin, "DELETE", f"Conferences/{conference.sid}/Participants/{alice.sid}.json")
    assert removed.status_code == 204
    standin.run()
    assert app_side.conference_events()[-1] == ("participant-leave", "alice")
    assert alice.status == "completed"  # nothing after its <Dial><Conference>
    assert [p["CallStatus"] for p in app_side.posts("/voice/status") if p["CallSid"] == alice.sid][-1] == "completed"
    assert rest(standin, "DELETE", f"Conferences/{conference.sid}/Participants/{alice.sid}.json").json()[
        "code"] == 20404


def test_the_outside_party_hanging_up_ends_the_conference_for_everyone(standin, app_side):
    parent, alice, conference = conference_of_two(standin, app_side)
    rest(standin, "POST", f"Conferences/{conference.sid}/Participants/{parent.sid}.json", Hold="true")
    standin.hang_up(parent.sid)
    standin.run()
    tail = app_side.posts("/voice/conference")[-3:]
    assert [(e["StatusCallbackEvent"], e.get("CallSid")) for e in tail] == [
        ("participant-leave", parent.sid), ("participant-leave", alice.sid), ("conference-end", None)]
    assert tail[2]["ReasonConferenceEnded"] == "participant-with-end-conference-on-exit-left"
    assert tail[2]["CallSidEndingConference"] == parent.sid
    assert (parent.status, alice.status, conference.status) == ("completed", "completed", "completed")


def test_a_call_still_ringing_toward_an_ended_conference_keeps_ringing(standin, app_side):
    parent, _, conference = conference_of_two(standin, app_side)
    body = rest(standin, "POST", f"Conferences/{conference.sid}/Participants.json", From=TEAM,
                To="client:bob").json()
    standin.hang_up(parent.sid)
    assert conference.status == "completed"
    assert standin.call(body["call_sid"]).status == "ringing"  # the app must hang it up itself


def test_conferences_listed_by_name_and_ended_by_rest(standin, app_side):
    parent, alice, conference = conference_of_two(standin, app_side)
    listed = rest(standin, "GET", f"Conferences.json?FriendlyName=shetphone-{parent.sid}&Status=in-progress")
    assert [c["sid"] for c in listed.json()["conferences"]] == [conference.sid]
    rest(standin, "POST", f"Conferences/{conference.sid}.json", Status="completed")
    standin.run()
    assert app_side.posts("/voice/conference")[-1]["ReasonConferenceEnded"] == "conference-ended-via-api"
    assert (parent.status, alice.status) == ("completed", "completed")


# ------------------------------------------------------------- REST, as Twilio answers


def test_rest_errors_have_twilios_shape(standin):
    unknown = rest(standin, "POST", f"Calls/CA{'0' * 32}.json", Status="completed")
    assert unknown.status_code == 404
    assert set(unknown.json()) == {"code", "message", "more_info", "status"}
    assert unknown.json()["status"] == 404 and unknown.json()["code"] == 20404
    wrong = requests.get(f"{standin.url}/2010-04-01/Accounts/{standin.account_sid}/Calls/CA{'0' * 32}.json",
                         auth=(standin.account_sid, "wrong"), timeout=5)
    assert (wrong.status_code, wrong.json()["code"]) == (401, 20003)
    standin.fail_next(429, "Too many requests", 20429)
    assert rest(standin, "GET", f"Calls/CA{'0' * 32}.json").json()["message"] == "Too many requests"


def test_calls_created_by_rest_run_their_twiml_once_answered(standin, app_side):
    created = rest(standin, "POST", "Calls.json", To=CALLER, From=TEAM,
                   Twiml="<Response><Say>Hello from Discord</Say></Response>", StatusCallback=STATUS,
                   StatusCallbackEvent=["initiated", "answered", "completed"])
    assert created.status_code == 201 and created.json()["direction"] == "outbound-api"
    call = standin.call(created.json()["sid"])
    standin.answer(call.sid)
    standin.run()
    assert call.heard == ["say:Hello from Discord"] and call.status == "completed"
    assert [p["CallStatus"] for p in app_side.posts("/voice/status")] == ["initiated", "in-progress", "completed"]


# --------------------------------------------------------------- with the real app


def test_the_real_app_accepts_the_stand_ins_signatures_through_the_flask_client(app, standin, phone_ready):
    phone_ready("alice")  # their pages' phones are started: the call rings them
    phone_ready("bob")
    settings = app.extensions["shetphone"].settings
    standin.accept(settings.twilio.account_sid, settings.twilio.auth_token)
    standin.connect(FlaskCallbacks(app.test_client(), PUBLIC_URL), PUBLIC_URL)
    parent = standin.incoming_call(CALLER, TEAM)
    standin.run()
    assert sorted(c.to for c in standin.children_of(parent.sid)) == ["client:alice", "client:bob"]
    (alice,) = [c for c in standin.children_of(parent.sid) if c.to == "client:alice"]
    standin.answer(alice.sid)
    standin.run()
    assert {d.status for d in standin.deliveries_to("/voice/status")} == {204}  # signature and all accepted
    browser = app.test_client()
    login(browser, "alice")
    (call,) = browser.get("/calls").get_json()["calls"]
    assert (call["call_sid"], call["status"]) == (parent.sid, "in-progress")


def test_auto_mode_posts_to_a_live_server_as_it_goes(tmp_path):
    files = make_team_files(tmp_path)
    server = start_server(files)
    standin = TwilioStandIn(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"], mode="auto")
    session = live_login(server, "alice")
    page = socketio.Client(http_session=session, reconnection=False)  # alice's page, its phone started
    page.connect(server.url, transports=["websocket"], wait_timeout=10)
    try:
        phone_started_on(server.url, session, page, "alice")
        standin.connect(HttpCallbacks(), server.url)
        parent = standin.incoming_call(CALLER, TEAM)
        standin.wait_idle()
        (alice,) = [c for c in standin.children_of(parent.sid) if c.to == "client:alice"]
        standin.answer(alice.sid)
        standin.wait_idle()
        assert standin.deliveries_to("/voice")[0].status == 200
        assert {d.status for d in standin.deliveries_to("/voice/status")} == {204}
        calls = live_login(server, "bob").get(server.url + "/calls", timeout=10).json()["calls"]
        assert [(c["call_sid"], c["status"]) for c in calls] == [(parent.sid, "in-progress")]
    finally:
        page.disconnect()
        standin.stop()
        server.stop()


def test_wait_until_wakes_when_a_rest_request_changes_the_model(standin):
    """What the app does after answering a callback shows only as REST requests: wait for their effect."""
    import threading

    created = threading.Thread(target=lambda: rest(standin, "POST", "Calls.json", To=CALLER, From=TEAM,
                                                   Twiml="<Response><Hangup/></Response>"))
    created.start()
    standin.wait_until(lambda: bool(standin.calls_to(CALLER)), "a call to the caller")
    created.join(10)
    assert standin.calls_to(CALLER)[0].from_ == TEAM
    with pytest.raises(AssertionError, match=r"not within 0\.1 s: never"):
        standin.wait_until(lambda: False, "never", timeout=0.1)


# ------------------------------------------------------------------ <Connect><Stream>


class StreamEnd:
    """A websocket server standing in for the bridge: records what Twilio's side sends, then acts as told."""

    def __init__(self, close_after_start: bool) -> None:
        self.close_after_start = close_after_start
        self.messages: list[dict] = []
        self.signatures: list[str | None] = []
        self.paths: list[str] = []
        self.port = 0
        # Set once the handler has read every message: the far side's close handshake can
        # finish while messages it sent before closing still wait in the handler's queue.
        self.finished = threading.Event()
        self._ready = threading.Event()
        threading.Thread(target=asyncio.run, args=(self._serve(),), daemon=True).start()
        assert self._ready.wait(10)

    async def _serve(self) -> None:
        from websockets.asyncio.server import serve

        async def handle(websocket) -> None:
            self.signatures.append(websocket.request.headers.get("X-Twilio-Signature"))
            self.paths.append(websocket.request.path)
            try:
                async for raw in websocket:
                    message = json.loads(raw)
                    self.messages.append(message)
                    if message["event"] == "start":
                        await websocket.send(json.dumps({"event": "mark", "streamSid": message["streamSid"],
                                                         "mark": {"name": "played"}}))
                    if message["event"] == "mark" and self.close_after_start:
                        await websocket.close(1000, "done")
            finally:
                self.finished.set()

        async with serve(handle, "127.0.0.1", 0) as server:
            self.port = server.sockets[0].getsockname()[1]
            self._ready.set()
            await asyncio.Event().wait()

    def events(self) -> list[str]:
        return [m["event"] for m in self.messages]


def test_a_connect_stream_opens_a_signed_media_stream_whose_end_ends_the_call(standin):
    end = StreamEnd(close_after_start=True)
    standin.stream_to(lambda url: f"ws://127.0.0.1:{end.port}{urlsplit(url).path}")
    document = twiml.media_stream("wss://phone.example.test/media/stream", {"target": "echo", "auth": "v1.x"})
    created = rest(standin, "POST", "Calls.json", To=CALLER, From=TEAM, Twiml=document, StatusCallback=STATUS).json()
    standin.answer(created["sid"])
    call = standin.call(created["sid"])
    (stream,) = call.streams
    assert stream.closed.wait(10) and end.finished.wait(10)
    assert end.paths == ["/media/stream"]
    assert RequestValidator(standin.auth_token).validate("wss://phone.example.test/media/stream", {},
                                                         end.signatures[0])
    assert end.events() == ["connected", "start", "mark"]  # the mark echoed once "played"
    start = end.messages[1]["start"]
    assert (start["callSid"], start["accountSid"]) == (call.sid, standin.account_sid)
    assert start["customParameters"] == {"target": "echo", "auth": "v1.x"}
    assert (stream.close_code, stream.close_reason) == (1000, "done")
    # Nothing after <Connect>: the call ends when its stream does.
    assert call.status == "completed"


def test_a_call_that_ends_tells_its_stream_stop(standin):
    end = StreamEnd(close_after_start=False)
    standin.stream_to(lambda url: f"ws://127.0.0.1:{end.port}{urlsplit(url).path}")
    document = twiml.media_stream("wss://phone.example.test/media/stream", {"target": "echo"})
    created = rest(standin, "POST", "Calls.json", To=CALLER, From=TEAM, Twiml=document).json()
    standin.answer(created["sid"])
    (stream,) = standin.call(created["sid"]).streams
    assert stream.started.wait(10)
    stream.play(np.full(1600, 1000, dtype=np.int16))  # 200 ms of the caller
    rest(standin, "POST", f"Calls/{created['sid']}.json", Status="completed")
    assert stream.closed.wait(10) and end.finished.wait(10)
    events = end.events()
    assert events[:2] == ["connected", "start"] and events[-1] == "stop"
    assert sorted(events[2:-1]) == ["mark", *["media"] * 10]  # the echoed mark comes whenever it was "played"
    assert standin.call(created["sid"]).status == "completed"
