"""twilio_rest against the Twilio stand-in: the requests Twilio gets, its answers, its errors as ours."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from shetphone import control, twiml
from shetphone.twilio_rest import TwilioRest, TwilioRestError, run_plan

TEAM = "+441595000001"
CALLER = "+447700900123"
CONFERENCE_URL = "https://phone.example.test/voice/conference"
STATUS_URL = "https://phone.example.test/voice/status"
CONFIG = control.ControlConfig(conference_status_url=CONFERENCE_URL, call_status_url=STATUS_URL, ring_timeout=20,
                               hold_url="https://phone.example.test/static/hold.mp3")


@pytest.fixture
def rest(standin):
    return TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url)


def in_conference(standin, rest, name: str, label: str, outside: bool = False) -> str:
    """A call placed by REST and answered, that joins the conference ``name`` (as a moved leg would)."""
    call = rest.create_call(CALLER if outside else "client:" + label, TEAM,
                            twiml.conference(name, CONFERENCE_URL, label, end_on_exit=outside))
    standin.answer(call.sid)
    return call.sid


def test_requests_go_to_the_configured_base_with_the_accounts_credentials(standin, rest):
    call = rest.create_call(CALLER, TEAM, "<Response><Say>Hello</Say></Response>", status_callback=STATUS_URL)
    seen = standin.requests_seen[-1]
    assert (seen.method, seen.path) == ("POST", f"/2010-04-01/Accounts/{standin.account_sid}/Calls.json")
    assert seen.authorization == standin.expected_auth
    assert (seen.param("To"), seen.param("From"), seen.param("StatusCallback")) == (CALLER, TEAM, STATUS_URL)
    assert seen.params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert seen.param("Twiml") == "<Response><Say>Hello</Say></Response>"
    assert call.sid == standin.calls_to(CALLER)[0].sid and call.status == "ringing"


def test_the_librarys_log_of_every_request_and_its_headers_is_kept_out_of_ours(standin, rest, caplog):
    caplog.set_level("INFO")
    rest.create_call(CALLER, TEAM, "<Response/>")
    assert [record.getMessage() for record in caplog.records if record.name.startswith("twilio")] == []


def test_a_twilio_edge_in_the_environment_does_not_move_the_requests(standin, monkeypatch):
    monkeypatch.setenv("TWILIO_EDGE", "dublin")
    monkeypatch.setenv("TWILIO_REGION", "ie1")
    rest = TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url)
    rest.create_call(CALLER, TEAM, "<Response/>")
    assert standin.requests_seen[-1].path.endswith("/Calls.json")


def test_redirect_and_end_a_call(standin, rest):
    sid = in_conference(standin, rest, "shetphone-CA1", "outside", outside=True)
    info = rest.redirect_call(sid, "<Response><Say>Goodbye</Say><Hangup/></Response>")
    assert info.sid == sid
    assert standin.requests_seen[-1].param("Twiml") == "<Response><Say>Goodbye</Say><Hangup/></Response>"
    assert standin.call(sid).heard[-1] == "say:Goodbye" and standin.call(sid).status == "completed"

    ringing = rest.create_call("+447700900999", TEAM, "<Response/>")
    assert rest.end_call(ringing.sid).status == "canceled"  # hung up before it was answered
    assert standin.requests_seen[-1].param("Status") == "completed"


def test_participants_rung_held_listed_and_removed(standin, rest):
    name = "shetphone-CA2"
    outside = in_conference(standin, rest, name, "outside", outside=True)
    alice = in_conference(standin, rest, name, "alice")
    conference = standin.conference_named(name)

    added = rest.add_participant(conference.sid, TEAM, "client:bob", "bob", 20, STATUS_URL)
    ring = standin.requests_seen[-1]
    assert ring.path.endswith(f"/Conferences/{conference.sid}/Participants.json")
    assert {k: ring.param(k) for k in ("From", "To", "Label", "Timeout", "StatusCallback", "Beep")} == {
        "From": TEAM, "To": "client:bob", "Label": "bob", "Timeout": "20", "StatusCallback": STATUS_URL,
        "Beep": "false"}
    assert ring.params["StatusCallbackEvent"] == ["initiated", "ringing", "answered", "completed"]
    assert added.label == "bob" and standin.call(added.call_sid).to == "client:bob"

    held = rest.hold_participant(conference.sid, outside, True, "https://phone.example.test/static/hold.mp3")
    assert held.hold is True
    assert standin.requests_seen[-1].param("HoldUrl") == "https://phone.example.test/static/hold.mp3"
    assert standin.call(outside).heard[-1] == "hold:https://phone.example.test/static/hold.mp3"
    assert rest.hold_participant(conference.sid, outside, False, "ignored when resuming").hold is False
    assert standin.requests_seen[-1].param("HoldUrl") is None

    standin.answer(added.call_sid)
    assert {p.label for p in rest.participants(conference.sid)} == {"outside", "alice", "bob"}
    rest.remove_participant(conference.sid, alice)
    assert standin.requests_seen[-1].method == "DELETE"
    assert {p.label for p in rest.participants(conference.sid)} == {"outside", "bob"}
    assert standin.call(alice).status == "completed"  # nothing after its <Dial>: the leg ends


def test_conferences_by_name_and_ended(standin, rest):
    in_conference(standin, rest, "shetphone-CA3", "outside", outside=True)
    (found,) = rest.conferences_named("shetphone-CA3")
    assert found.friendly_name == "shetphone-CA3" and found.status == "in-progress"
    assert rest.conferences_named("shetphone-CA4") == []
    rest.end_conference(found.sid)
    assert standin.conferences[found.sid].status == "completed"
    assert rest.conferences_named("shetphone-CA3") == []


def test_twilios_refusal_becomes_our_error_with_its_message_status_and_code(standin, rest):
    standin.fail_next(400, "Account not authorized to call +88212345678", 21215, path=r"/Participants\.json$")
    with pytest.raises(TwilioRestError) as refused:
        rest.add_participant("CF" + "0" * 32, TEAM, "+88212345678", "x", 20, STATUS_URL)
    assert refused.value.message == "Account not authorized to call +88212345678"
    assert (refused.value.status, refused.value.code) == (400, 21215)
    assert refused.value.more_info == "https://www.twilio.com/docs/errors/21215"
    assert not refused.value.unreachable


def test_an_unknown_call_and_a_finished_call(standin, rest):
    with pytest.raises(TwilioRestError) as unknown:
        rest.redirect_call("CA" + "0" * 32, "<Response/>")
    assert (unknown.value.status, unknown.value.code) == (404, 20404)
    assert "was not found" in unknown.value.message
    sid = in_conference(standin, rest, "shetphone-CA5", "outside", outside=True)
    standin.hang_up(sid)
    with pytest.raises(TwilioRestError) as over:
        rest.redirect_call(sid, "<Response/>")
    assert (over.value.status, over.value.code, over.value.message) == (
        400, 21220, "Call is not in-progress. Cannot redirect.")


def test_wrong_credentials(standin):
    rest = TwilioRest(standin.account_sid, "not-the-token", api_base=standin.url)
    with pytest.raises(TwilioRestError) as refused:
        rest.fetch_call("CA" + "0" * 32)
    assert (refused.value.status, refused.value.code, refused.value.message) == (401, 20003, "Authenticate")


def test_unreachable_is_the_same_error_with_a_clear_message(standin, rest):
    standin.unreachable = True
    with pytest.raises(TwilioRestError) as dropped:
        rest.end_call("CA" + "0" * 32)
    assert dropped.value.unreachable and dropped.value.status is None
    assert "Twilio could not be reached" in dropped.value.message
    closed = TwilioRest(standin.account_sid, standin.auth_token, api_base="http://127.0.0.1:9")
    with pytest.raises(TwilioRestError) as refused:
        closed.end_call("CA" + "0" * 32)
    assert refused.value.unreachable and "the connection failed" in refused.value.message


def test_a_silent_api_times_out_quickly(standin):
    standin.stalled = True
    rest = TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url, timeout=0.5)
    with pytest.raises(TwilioRestError) as silent:
        rest.end_call("CA" + "0" * 32)
    assert silent.value.unreachable and "did not answer in time" in silent.value.message


def test_an_answer_that_is_not_twilios_json_is_a_clear_error():
    class Html(BaseHTTPRequestHandler):
        def do_POST(self):
            body = b"<html>Bad gateway</html>"
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Html)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        rest = TwilioRest("AC" + "1" * 32, "token", api_base=f"http://127.0.0.1:{server.server_address[1]}")
        with pytest.raises(TwilioRestError) as garbled:
            rest.end_call("CA" + "0" * 32)
        assert "could not be read" in garbled.value.message
    finally:
        server.shutdown()


def test_recording_media_streams_with_range(standin, rest):
    sid = "RE" + "ab" * 16
    standin.add_recording(sid, bytes(range(256)) * 4)
    with rest.recording_media(sid) as media:
        assert media.status == 200 and media.headers["Content-Type"] == "audio/mpeg"
        assert b"".join(media.iter_content()) == bytes(range(256)) * 4
    assert standin.requests_seen[-1].path == f"/2010-04-01/Accounts/{standin.account_sid}/Recordings/{sid}.mp3"
    assert standin.requests_seen[-1].authorization == standin.expected_auth
    with rest.recording_media(sid, headers={"Range": "bytes=10-19"}) as part:
        assert part.status == 206 and part.headers["Content-Range"] == "bytes 10-19/1024"
        assert b"".join(part.iter_content()) == bytes(range(10, 20))
    with pytest.raises(TwilioRestError) as missing:
        rest.recording_media("RE" + "cd" * 16)
    assert missing.value.status == 404
    assert rest.recording_media_url(sid) == (
        f"{standin.url}/2010-04-01/Accounts/{standin.account_sid}/Recordings/{sid}.mp3")


# ---------------------------------------------------------------------- run_plan


def conference_state(standin, rest, root: str = "CA" + "7" * 32):
    """An incoming call already in its conference: the caller and alice joined, as the stand-in has them."""
    name = control.conference_name_for(root)
    outside = in_conference(standin, rest, name, "outside", outside=True)
    alice = in_conference(standin, rest, name, "alice")
    state = control.CallControl(
        root_sid=root, number=TEAM, direction="inbound", phase="conference",
        conference_sid=standin.conference_named(name).sid,
        parties=(control.Party(outside, "outside", "number", CALLER, "joined", outside=True),
                 control.Party(alice, "alice", "client", "alice", "joined")))
    return state, outside, alice


def cold_transfer_to_bob(state):
    plan = control.plan_request(state, control.TransferRequest(control.Destination("client", "bob"), "cold"),
                                "alice", CONFIG)
    assert [type(s) for s in plan.steps] == [control.Ring, control.Hold, control.Remove]
    return plan


def test_a_plan_runs_in_order_and_its_state_learns_the_rung_calls_sid(standin, rest):
    state, outside, alice = conference_state(standin, rest)
    outcome = run_plan(rest, cold_transfer_to_bob(state), state)
    assert outcome.error is None
    (bob,) = standin.calls_to("client:bob")
    assert outcome.rung == {"bob": bob.sid}
    assert outcome.state.party(label="bob").call_sid == bob.sid
    assert standin.participant(outside).hold is True
    assert standin.participant(alice) is None and standin.call(alice).status == "completed"


def test_a_failed_step_undoes_the_steps_before_it(standin, rest):
    state, outside, alice = conference_state(standin, rest)
    standin.fail_next(500, "Service unavailable", 20500, method="DELETE")
    outcome = run_plan(rest, cold_transfer_to_bob(state), state)
    assert outcome.error.message == "Service unavailable" and outcome.error.status == 500
    assert outcome.state == state and outcome.done == () and not outcome.undo_failed
    (bob,) = standin.calls_to("client:bob")
    assert bob.status == "canceled"  # the ring was taken back
    assert standin.participant(outside).hold is False  # and the hold
    assert standin.participant(alice) is not None


def test_when_an_undo_fails_the_state_says_what_is_left(standin, rest):
    state, outside, _ = conference_state(standin, rest)
    plan = cold_transfer_to_bob(state)
    standin.fail_next(500, "Service unavailable", 20500, method="DELETE")
    # the hold goes through; taking it back (the second such request) fails
    standin.fail_next(503, "Try later", 20503, path=r"/Participants/CA[0-9a-f]+\.json$", method="POST", skip=1)
    outcome = run_plan(rest, plan, state)
    assert outcome.undo_failed
    assert outcome.state.outside.held is True and outcome.state.party(label="bob").status == "ringing"
    assert outcome.state.party(label="bob").call_sid == standin.calls_to("client:bob")[0].sid
    assert [type(s) for s in outcome.done] == [control.Ring, control.Hold]
    assert standin.participant(outside).hold is True


def test_an_irreversible_step_is_not_undone_and_stays_in_the_state(standin, rest):
    state, outside, alice = conference_state(standin, rest)
    plan = control.Plan(
        steps=(control.Remove(state.conference_sid, alice), control.Hold(state.conference_sid, outside, True)),
        state=state, checkpoints=(control._replace_party(state, "alice", status="left"), state))
    standin.fail_next(500, "Service unavailable", 20500, path=r"/Participants/CA[0-9a-f]+\.json$", method="POST")
    outcome = run_plan(rest, plan, state)
    assert outcome.error is not None
    assert outcome.state.party(label="alice").status == "left"
    assert [type(s) for s in outcome.done] == [control.Remove]


def test_a_callbacks_plan_failing_at_its_first_step_keeps_what_the_callback_told(standin, rest):
    state, outside, _ = conference_state(standin, rest)
    wanted = control.plan_request(state, control.HoldRequest(True), "alice", CONFIG).state
    unheld = control._replace_party(wanted, "outside", held=False, status="connecting")
    joined = control.on_conference_event(unheld, control.ConferenceEvent(
        "participant-join", wanted.conference_sid, wanted.conference_name, outside, "outside", sequence=9), CONFIG)
    standin.fail_next(500, "Service unavailable", 20500)
    outcome = run_plan(rest, joined, joined.base)
    assert outcome.failed == joined.steps[0] and outcome.state == joined.base
    assert outcome.state.outside.status == "joined" and outcome.state.outside.sequence == 9
