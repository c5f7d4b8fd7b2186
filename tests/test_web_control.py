"""Call control's routes and callbacks (web/control.py, web/voice.py) against the Twilio stand-in.

Every route and edge of SPEC §6, with Twilio played by tests/twilio_standin.py:
its REST API answers the app, and it posts the callbacks (signed) to the app's
test client, in order, when the test says ``run``.
"""

from __future__ import annotations

from urllib.parse import parse_qs, urlsplit

import pytest
from call_control_helpers import CALLER, TEAM, answered_incoming, answered_outgoing, conference_of, rung
from conftest import PASSWORDS, PUBLIC_URL, csrf_token_from, login, make_team_files, settled, signature_for
from twilio_standin import FlaskCallbacks

from shetphone import create_app
from shetphone.settings import load_settings
from shetphone.store import StoreUnavailable

HOLD_MUSIC = "https://phone.example.test/static/hold.mp3"
MUM = "+441595123456"  # a fixed line in GB: an allowed destination
DAD = "+12015550123"
CAROLS_NUMBER = "+441595000004"
ALICES_OWN_NUMBER = "+15005550006"  # she may call from it; it rings nobody


class Phone:
    """The app wired to the stand-in, and its users' logged-in clients and sockets."""

    def __init__(self, app, standin, files):
        self.app, self.standin, self.files = app, standin, files
        self.clients, self.sockets = {}, {}

    def user(self, name: str):
        if name not in self.clients:
            client = self.app.test_client()
            assert login(client, name).status_code == 302
            client.csrf = csrf_token_from(client.get("/").get_data(as_text=True))
            self.clients[name] = client
            self.sockets[name] = self.app.extensions["socketio"].test_client(self.app, flask_test_client=client)
            self.sockets[name].emit("phone", {"ready": True})  # the page's Device registered: calls ring it
            self.sockets[name].get_received()
        return self.clients[name]

    def post(self, name: str, root: str, action: str, body: dict | None = None, csrf: bool = True):
        client = self.user(name)
        headers = {"X-CSRFToken": client.csrf} if csrf else {}
        return client.post(f"/calls/{root}/{action}", json=body if body is not None else {}, headers=headers)

    def events(self, name: str, event: str) -> list[dict]:
        return [e["args"][0] for e in self.sockets[name].get_received() if e["name"] == event]

    def signed(self, path: str, params: dict, signature: str | None = None):
        """A webhook POST as Twilio signs it (or with ``signature``)."""
        sig = signature if signature is not None else signature_for(self.files.auth_token, PUBLIC_URL + path, params)
        return self.app.test_client().post(path, data=params, headers={"X-Twilio-Signature": sig})

    def controls(self):
        return self.app.extensions["shetphone"].store.control

    def rest(self, method: str, tail: str) -> list:
        """The REST requests the app made, of this method, whose path ends with ``tail``."""
        return [r for r in self.standin.requests_seen if r.method == method and r.path.endswith(tail)]


def build_phone(tmp_path, standin, extra: str = "") -> Phone:
    files = make_team_files(tmp_path, extra=f"twilio_api_base = {standin.url}\n{extra}")
    standin.accept(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"])
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    standin.connect(FlaskCallbacks(app.test_client(), PUBLIC_URL), PUBLIC_URL)
    built = Phone(app, standin, files)
    for name in ("alice", "bob"):  # their phones are started, so the team number rings them (SPEC §7)
        built.user(name)
    return built


@pytest.fixture
def phone(tmp_path, standin):
    built = build_phone(tmp_path, standin, f"hold_music_url = {HOLD_MUSIC}")
    yield built
    built.app.extensions["shetphone"].store.close()


def by_label(payload: dict) -> dict[str, dict]:
    return {p["label"]: p for p in payload["participants"]}


def held_and_status(payload: dict) -> dict[str, tuple[str, bool]]:
    return {p["label"]: (p["status"], p["held"]) for p in payload["participants"]}


def in_conference(phone: Phone, root: str) -> set[str]:
    conference = conference_of(phone.standin, root)
    return {p.label for p in conference.participants.values()} if conference else set()


def held_call(phone: Phone, by: str = "alice"):
    """An incoming call answered by ``by``, then held: both legs in the conference, the caller on hold."""
    root, browser = answered_incoming(phone.standin, by)
    assert phone.post(by, root.sid, "hold", {"hold": True}).status_code == 200
    phone.standin.run()
    return root, browser


def transfer_to_bob(phone: Phone, mode: str):
    root, browser = answered_incoming(phone.standin)
    answer = phone.post("alice", root.sid, "transfer", {"to": "bob", "mode": mode})
    assert answer.status_code == 200, answer.get_json()
    phone.standin.run()
    return root, browser, rung(phone.standin, "client:bob")


# ------------------------------------------------------------------------- hold


def test_hold_moves_both_legs_into_the_calls_conference_and_plays_the_hold_music(phone):
    root, alice = answered_incoming(phone.standin)
    phone.user("alice")
    answer = phone.post("alice", root.sid, "hold", {"hold": True})
    assert answer.status_code == 200
    body = answer.get_json()
    assert body["call_sid"] == root.sid and body["conference"] is True
    assert by_label(body)["outside"]["held"] is True  # wanted at once; done once the caller is in

    # The child leg was redirected by REST into the conference; the parent followed by its <Dial action>.
    (move,) = phone.rest("POST", f"/Calls/{alice.sid}.json")
    assert "<Conference" in move.param("Twiml") and f"shetphone-{root.sid}" in move.param("Twiml")
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice"}
    participant = phone.standin.participant(root.sid)
    assert participant.hold and participant.end_on_exit  # the caller's leaving ends the conference
    assert phone.standin.call(root.sid).heard[-1] == f"hold:{HOLD_MUSIC}"
    (hold,) = phone.rest("POST", f"/Participants/{root.sid}.json")
    assert (hold.param("Hold"), hold.param("HoldUrl")) == ("true", HOLD_MUSIC)

    last = phone.events("alice", "call_participants")[-1]
    assert held_and_status(last) == {"outside": ("joined", True), "alice": ("joined", False)}
    assert last["transfer"] is None and last["call_sid"] == root.sid

    resumed = phone.post("alice", root.sid, "hold", {"hold": False})
    assert resumed.status_code == 200 and by_label(resumed.get_json())["outside"]["held"] is False
    phone.standin.run()
    assert not phone.standin.participant(root.sid).hold
    assert phone.rest("POST", f"/Participants/{root.sid}.json")[-1].param("Hold") == "false"


def test_without_hold_music_twilios_own_is_played(tmp_path, standin):
    phone = build_phone(tmp_path, standin)
    try:
        root, _ = held_call(phone)
        assert phone.standin.call(root.sid).heard[-1] == "hold:twilio-default-hold-music"
        assert phone.rest("POST", f"/Participants/{root.sid}.json")[-1].param("HoldUrl") is None
    finally:
        phone.app.extensions["shetphone"].store.close()


def test_an_outgoing_call_is_held_too_its_dialled_number_moved_and_the_browser_following(phone):
    root, dialled = answered_outgoing(phone.standin, DAD)
    # Every <Dial> carries the action the browser's leg follows its child through.
    assert phone.standin.deliveries_to("/voice")[0].body.count('action="https://phone.example.test/voice/dial-comp')
    assert phone.post("alice", root.sid, "hold", {"hold": True}).status_code == 200
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice"}
    assert phone.standin.participant(dialled.sid).hold and phone.standin.participant(dialled.sid).end_on_exit


def test_the_outside_party_hanging_up_while_held_ends_the_conference_and_every_team_leg_is_told(phone):
    root, alice = held_call(phone)
    phone.events("alice", "call_participants")
    phone.user("bob")  # on the number, not on the call: he is told too
    phone.standin.hang_up(root.sid)
    phone.standin.run()
    conference = conference_of(phone.standin, root.sid)
    assert conference.status == "completed" and not phone.standin.call(alice.sid).active
    for user in ("alice", "bob"):
        last = phone.events(user, "call_participants")[-1]
        assert {p["status"] for p in last["participants"]} == {"left"}, user
    again = phone.post("alice", root.sid, "hold", {"hold": False})
    assert again.status_code == 409 and again.get_json() == {"error": "The call is not in progress."}


def test_two_people_pressing_hold_at_once_one_wins_and_the_other_is_answered_409(phone):
    root, _ = answered_incoming(phone.standin)
    assert phone.post("alice", root.sid, "add", {"to": "bob"}).status_code == 200
    phone.standin.run()
    phone.standin.answer(rung(phone.standin, "client:bob").sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice", "bob"}
    phone.user("bob")
    seen = {}
    # bob presses Hold while Twilio is still answering alice's hold.
    phone.standin.while_answering(lambda: seen.update(bob=phone.post("bob", root.sid, "hold", {"hold": True})),
                                  path=f"/Participants/{root.sid}.json")
    alices = phone.post("alice", root.sid, "hold", {"hold": True})
    assert alices.status_code == 200
    assert seen["bob"].status_code == 409
    assert seen["bob"].get_json() == {"error": "Another change to this call is under way; try again."}
    assert len(phone.rest("POST", f"/Participants/{root.sid}.json")) == 1  # one hold, not two
    assert not phone.controls().get(root.sid).claimed
    phone.standin.run()
    assert phone.post("bob", root.sid, "hold", {"hold": False}).status_code == 200  # the claim was let go


# --------------------------------------------------------------------- Twilio failing


@pytest.mark.parametrize("failure", ["refused", "unreachable"])
def test_twilio_failing_is_a_502_with_its_message_and_nothing_half_done(phone, failure):
    root, alice = answered_incoming(phone.standin)
    if failure == "refused":
        phone.standin.fail_next(400, "Call is not in-progress. Cannot redirect.", 21220, path=f"Calls/{alice.sid}")
    else:
        phone.standin.unreachable = True
    answer = phone.post("alice", root.sid, "hold", {"hold": True})
    assert answer.status_code == 502
    message = answer.get_json()["error"]
    if failure == "refused":
        assert message == "Call is not in-progress. Cannot redirect."
    else:
        assert message.startswith("Twilio could not be reached (127.0.0.1:")
    stored = phone.controls().get(root.sid)
    assert stored.state.phase == "bridged" and not stored.state.hold_wanted and not stored.claimed
    phone.standin.unreachable = False
    phone.standin.run()
    assert conference_of(phone.standin, root.sid) is None  # nothing moved
    assert phone.post("alice", root.sid, "hold", {"hold": True}).status_code == 200  # and it works now


def test_a_step_undone_when_a_later_one_fails(phone):
    """A warm transfer in a conference: bob is rung, then the hold fails; bob's call is hung up again."""
    root, _ = held_call(phone)
    phone.post("alice", root.sid, "hold", {"hold": False})
    phone.standin.run()
    phone.standin.fail_next(500, "Internal error", path=f"/Participants/{root.sid}.json")
    answer = phone.post("alice", root.sid, "transfer", {"to": "bob", "mode": "warm"})
    assert answer.status_code == 502 and answer.get_json() == {"error": "Internal error"}
    (bobs,) = phone.standin.calls_to("client:bob")[-1:]
    assert bobs.status == "canceled"  # rung, then taken back
    stored = phone.controls().get(root.sid).state
    assert stored.transfer is None and stored.party(label="bob") is None and not stored.hold_wanted


# --------------------------------------------------------------------- cold transfer


def test_a_cold_transfer_rings_the_teammate_and_connects_the_caller_when_they_answer(phone):
    root, alice, bob = transfer_to_bob(phone, "cold")
    assert not phone.standin.call(alice.sid).active  # alice left at once
    assert phone.standin.participant(root.sid).hold  # the caller waits on hold
    (ring,) = phone.rest("POST", "/Participants.json")
    assert (ring.param("To"), ring.param("From"), ring.param("Label"), ring.param("Timeout")) == (
        "client:bob", TEAM, "bob", "20")
    status_url = urlsplit(ring.param("StatusCallback"))
    assert status_url.path == "/voice/status" and parse_qs(status_url.query) == {"call": [root.sid]}
    phone.standin.answer(bob.sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "bob"}
    assert not phone.standin.participant(root.sid).hold
    last = phone.events("alice", "call_participants")[-1]
    assert held_and_status(last) == {"outside": ("joined", False), "alice": ("left", False),
                                     "bob": ("joined", False)}
    assert last["transfer"] is None


def test_a_cold_transfer_nobody_answers_sends_the_caller_to_the_numbers_voicemail(phone):
    root, _, bob = transfer_to_bob(phone, "cold")
    phone.standin.no_answer(bob.sid)
    phone.standin.run()
    caller = phone.standin.call(root.sid)
    assert caller.recording is not None and "say:Sorry, nobody can take your call." in caller.heard[-1]
    assert conference_of(phone.standin, root.sid).status == "completed"
    notices = [n["notice"] for n in phone.events("alice", "call_notice")]
    assert notices == ["bob did not answer; the caller was sent to voicemail."]
    phone.standin.finish_recording(root.sid)
    phone.standin.run()
    (call,) = phone.user("alice").get("/calls").get_json()["calls"]  # bob's rung call is no call of its own
    assert call["call_sid"] == root.sid and call["voicemail_url"]


def test_a_cold_transfer_of_an_outgoing_call_unanswered_tells_the_other_party_and_ends(phone):
    root, dialled = answered_outgoing(phone.standin, DAD)
    assert phone.post("alice", root.sid, "transfer", {"to": "bob", "mode": "cold"}).status_code == 200
    phone.standin.run()
    assert not phone.standin.call(root.sid).active  # alice's browser left at its <Dial action>
    phone.standin.busy(rung(phone.standin, "client:bob").sid)
    phone.standin.run()
    other = phone.standin.call(dialled.sid)
    assert not other.active and other.heard[-1].startswith("say:Sorry, nobody is available")


def test_a_cold_transfer_to_a_number_rings_it_from_the_calls_team_number(phone):
    root, _ = answered_incoming(phone.standin)
    assert phone.post("alice", root.sid, "transfer", {"to": "01595 123456", "mode": "cold"}).status_code == 200
    phone.standin.run()
    mum = rung(phone.standin, MUM)
    assert mum.from_ == TEAM
    phone.standin.answer(mum.sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", MUM}


# --------------------------------------------------------------------- warm transfer


def test_a_warm_transfer_completed_connects_the_caller_to_bob_and_alice_leaves(phone):
    root, alice, bob = transfer_to_bob(phone, "warm")
    assert phone.standin.call(alice.sid).active and phone.standin.participant(root.sid).hold
    phone.standin.answer(bob.sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice", "bob"}
    assert phone.standin.participant(root.sid).hold  # alice and bob talk first
    transfer = phone.events("alice", "call_participants")[-1]["transfer"]
    assert transfer == {"to": "bob", "mode": "warm"}

    done = phone.post("alice", root.sid, "transfer/complete")
    assert done.status_code == 200
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "bob"}
    assert not phone.standin.participant(root.sid).hold and not phone.standin.call(alice.sid).active
    assert phone.rest("DELETE", f"/Participants/{alice.sid}.json")
    assert phone.events("alice", "call_participants")[-1]["transfer"] is None


def test_a_warm_transfer_cancelled_takes_bob_off_and_the_caller_off_hold(phone):
    root, _, bob = transfer_to_bob(phone, "warm")
    phone.standin.answer(bob.sid)
    phone.standin.run()
    cancelled = phone.post("alice", root.sid, "transfer/cancel")
    assert cancelled.status_code == 200
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice"}
    assert not phone.standin.participant(root.sid).hold and not phone.standin.call(bob.sid).active
    assert held_and_status(phone.events("alice", "call_participants")[-1])["bob"] == ("left", False)


def test_a_warm_transfer_nobody_answers_tells_the_user_and_takes_the_caller_off_hold(phone):
    root, _, bob = transfer_to_bob(phone, "warm")
    phone.events("alice", "call_notice")
    phone.standin.no_answer(bob.sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice"}
    assert not phone.standin.participant(root.sid).hold
    assert [n["notice"] for n in phone.events("alice", "call_notice")] == [
        "bob did not answer; the caller is back with you."]
    assert phone.post("alice", root.sid, "transfer/complete").status_code == 409  # none under way now


def test_the_users_browser_dropping_with_bob_still_ringing_makes_the_transfer_a_cold_one(phone):
    root, alice, bob = transfer_to_bob(phone, "warm")
    phone.standin.hang_up(alice.sid)  # alice's browser is gone
    phone.standin.run()
    assert phone.standin.participant(root.sid).hold  # still held: bob may yet answer
    assert phone.events("alice", "call_participants")[-1]["transfer"] == {"to": "bob", "mode": "cold"}
    phone.standin.no_answer(bob.sid)  # ... and as a cold one, no answer is the voicemail, not hold for ever
    phone.standin.run()
    assert phone.standin.call(root.sid).recording is not None


def test_the_users_browser_dropping_once_bob_answered_connects_the_caller_to_bob(phone):
    root, alice, bob = transfer_to_bob(phone, "warm")
    phone.user("bob")
    phone.standin.answer(bob.sid)
    phone.standin.run()
    phone.standin.hang_up(alice.sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "bob"}
    assert not phone.standin.participant(root.sid).hold
    assert "alice left during the transfer; bob takes the call." in [
        n["notice"] for n in phone.events("bob", "call_notice")]


# --------------------------------------------------------------------- three-way


def test_add_rings_a_number_and_it_joins_with_nobody_on_hold(phone):
    root, _ = answered_incoming(phone.standin)
    answer = phone.post("alice", root.sid, "add", {"to": MUM})
    assert answer.status_code == 200
    phone.standin.run()
    assert held_and_status(phone.events("alice", "call_participants")[-1])[MUM] == ("ringing", False)
    phone.standin.answer(rung(phone.standin, MUM).sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "alice", MUM}
    assert not any(p.hold for p in conference_of(phone.standin, root.sid).participants.values())


def test_an_added_party_who_does_not_answer_is_said_and_the_call_goes_on(phone):
    root, _ = answered_incoming(phone.standin)
    phone.post("alice", root.sid, "add", {"to": "bob"})
    phone.standin.run()
    phone.events("alice", "call_notice")
    phone.standin.busy(rung(phone.standin, "client:bob").sid)
    phone.standin.run()
    assert [n["notice"] for n in phone.events("alice", "call_notice")] == ["bob is busy."]
    assert in_conference(phone, root.sid) == {"outside", "alice"}


def test_a_callback_arriving_before_twilios_rest_answer_is_kept_and_applied(phone):
    """Twilio may post the conference's callbacks while its REST answer is still on its way."""
    root, alice = answered_incoming(phone.standin)
    phone.standin.while_answering(phone.standin.run, path=f"/Calls/{alice.sid}.json")
    assert phone.post("alice", root.sid, "add", {"to": "bob"}).status_code == 200
    phone.standin.run()
    # The joins came during the request; the ring waited for the conference's SID from them.
    state = phone.controls().get(root.sid).state
    assert state.conference_sid == conference_of(phone.standin, root.sid).sid
    assert state.party(label="bob").status == "ringing" and rung(phone.standin, "client:bob")


# --------------------------------------------------------------------- a browser that reconnects


def reconnected(phone: Phone, name: str) -> list[tuple[str, dict]]:
    """A new socket of ``name``'s login (the page reconnected): the calls' events it was sent at once, in order."""
    phone.user(name)
    socket = phone.app.extensions["socketio"].test_client(phone.app, flask_test_client=phone.clients[name])
    try:  # presence is announced from background tasks: it may come at any moment
        return [(e["name"], e["args"][0]) for e in socket.get_received() if e["name"].startswith("call_")]
    finally:
        socket.disconnect()


def test_a_browser_that_reconnects_sees_the_held_calls_participants_right_after_its_call_status(phone):
    root, alice = held_call(phone)
    live = phone.events("alice", "call_participants")[-1]
    assert held_and_status(live) == {"outside": ("joined", True), "alice": ("joined", False)}
    for name in ("alice", "bob"):  # bob is on the call's number: the live events reach him too
        caught_up = reconnected(phone, name)
        assert [event for event, _ in caught_up] == ["call_status", "call_participants"], name
        status, participants = (payload for _, payload in caught_up)
        assert (status["call_sid"], status["parent_call_sid"], status["status"]) == (alice.sid, root.sid,
                                                                                    "in-progress")
        assert participants == live, name
    assert reconnected(phone, "carol") == []  # neither her number nor her call


def test_a_reconnect_during_a_warm_transfer_shows_it_under_way(phone):
    root, _, bob = transfer_to_bob(phone, "warm")
    participants = [payload for event, payload in reconnected(phone, "alice") if event == "call_participants"]
    assert len(participants) == 1 and participants[0]["call_sid"] == root.sid
    assert participants[0]["transfer"] == {"to": "bob", "mode": "warm"}
    assert held_and_status(participants[0]) == {"outside": ("joined", True), "alice": ("joined", False),
                                                "bob": ("ringing", False)}
    assert by_label(participants[0])["bob"]["call_sid"] == bob.sid


def test_a_teammate_transferred_a_call_of_a_number_not_theirs_catches_up_with_it_too(phone):
    """bob is not on alice's caller ID; the call is his once he answers, and every leg the log knows has ended."""
    root = phone.standin.browser_call("alice", DAD, CallerId=ALICES_OWN_NUMBER)
    phone.standin.run()
    (dialled,) = phone.standin.children_of(root.sid)
    phone.standin.answer(dialled.sid)
    phone.standin.run()
    assert phone.post("alice", root.sid, "transfer", {"to": "bob", "mode": "cold"}).status_code == 200
    phone.standin.run()
    phone.standin.answer(rung(phone.standin, "client:bob").sid)
    phone.standin.run()
    assert in_conference(phone, root.sid) == {"outside", "bob"}
    live = phone.events("bob", "call_participants")[-1]
    assert reconnected(phone, "bob") == [("call_participants", live)]
    assert held_and_status(live) == {"outside": ("joined", False), "alice": ("left", False), "bob": ("joined", False)}
    assert reconnected(phone, "carol") == []


def test_a_call_whose_conference_ended_is_not_caught_up(phone):
    root, _ = held_call(phone)
    phone.standin.hang_up(root.sid)
    phone.standin.run()
    assert phone.controls().get(root.sid).state.phase == "ended"
    assert [event for event, _ in reconnected(phone, "alice")] == []


def test_the_call_status_catch_up_comes_even_when_call_controls_cannot_be_read(phone, monkeypatch):
    held_call(phone)

    def unavailable():
        raise StoreUnavailable("database is locked")

    monkeypatch.setattr(phone.controls(), "in_conference", unavailable)
    assert [event for event, _ in reconnected(phone, "alice")] == ["call_status"]


# --------------------------------------------------------------------- refusals


def test_destinations_are_checked(phone, tmp_path):
    root, _ = answered_incoming(phone.standin)
    cases = {
        "carol": "carol is not a teammate who can be rung.",  # shares no number with alice
        "client:mallory": "mallory is not a teammate who can be rung.",
        "09098790000": "Sorry, calls to premium rate numbers are not allowed.",
        "+33142685300": "Sorry, calls to that country are not allowed.",
        "not a number": "Sorry, that is not a valid phone number.",
    }
    for to, why in cases.items():
        answer = phone.post("alice", root.sid, "add", {"to": to})
        assert (answer.status_code, answer.get_json()) == (422, {"error": why}), to
    own = phone.post("alice", root.sid, "add", {"to": TEAM})
    assert own.status_code == 422
    phone.files.write_users({n: p for n, p in PASSWORDS.items() if n != "bob"})
    with phone.app.app_context():
        settled(phone.app.extensions["shetphone"].users)
    gone = phone.post("alice", root.sid, "transfer", {"to": "bob", "mode": "cold"})
    assert gone.status_code == 422  # removed from .htpasswd: never rung
    assert phone.rest("POST", "/Participants.json") == [] and phone.rest("POST", "/Calls/") == []


@pytest.mark.parametrize(("action", "body"), [
    ("hold", {}), ("hold", {"hold": "yes"}), ("transfer", {"to": "bob", "mode": "lukewarm"}),
    ("transfer", {"mode": "cold"}), ("add", {"to": 5}),
])
def test_a_bad_body_is_400(phone, action, body):
    root, _ = answered_incoming(phone.standin)
    answer = phone.post("alice", root.sid, action, body)
    assert answer.status_code == 400 and answer.get_json()["error"].startswith("Send {")


def test_without_the_csrf_token_it_is_400_and_logged_out_401(phone):
    root, _ = answered_incoming(phone.standin)
    answer = phone.post("alice", root.sid, "hold", {"hold": True}, csrf=False)
    assert answer.status_code == 400 and "CSRF" in answer.get_json()["error"]
    assert phone.app.test_client().post(f"/calls/{root.sid}/hold", json={"hold": True}).status_code in (400, 401)
    assert phone.standin.requests_seen == []


def test_who_may_control_a_call(phone):
    root, _ = answered_incoming(phone.standin)
    not_on_it = phone.post("bob", root.sid, "hold", {"hold": True})  # his number, not his call
    assert (not_on_it.status_code, not_on_it.get_json()) == (403, {"error": "You are not on this call."})
    assert phone.post("carol", root.sid, "hold", {"hold": True}).status_code == 404  # not her number's call
    assert phone.post("alice", "CA" + "0" * 32, "hold", {"hold": True}).status_code == 404


def test_a_call_not_answered_yet_is_not_in_progress(phone):
    root = phone.standin.incoming_call(CALLER, TEAM)
    phone.standin.run()
    answer = phone.post("alice", root.sid, "hold", {"hold": True})
    assert (answer.status_code, answer.get_json()) == (409, {"error": "The call is not in progress."})


def test_complete_and_cancel_need_a_warm_transfer_and_one_transfer_at_a_time(phone):
    root, _ = answered_incoming(phone.standin)
    for action in ("transfer/complete", "transfer/cancel"):
        answer = phone.post("alice", root.sid, action)
        assert (answer.status_code, answer.get_json()) == (409, {"error": "No transfer is under way on this call."})
    phone.post("alice", root.sid, "transfer", {"to": "bob", "mode": "warm"})
    phone.standin.run()
    again = phone.post("alice", root.sid, "transfer", {"to": MUM, "mode": "warm"})
    assert again.status_code == 409 and again.get_json()["error"] == "A transfer is already under way on this call."


def test_without_twilio_credentials_it_is_503(tmp_path, standin):
    files = make_team_files(tmp_path)
    del files.environ["TWILIO_ACCOUNT_SID"]
    app = create_app(load_settings(files.root, files.environ), async_mode="threading", overrides={"TESTING": True})
    try:
        client = app.test_client()
        login(client, "alice")
        csrf = csrf_token_from(client.get("/").get_data(as_text=True))
        answer = client.post("/calls/CA" + "1" * 32 + "/hold", json={"hold": True}, headers={"X-CSRFToken": csrf})
        assert answer.status_code == 503 and "TWILIO_ACCOUNT_SID" in answer.get_json()["error"]
    finally:
        app.extensions["shetphone"].store.close()


# --------------------------------------------------------------------- the webhooks around it


def test_an_outgoing_call_nobody_answers_just_ends_without_voicemail(phone):
    root = phone.standin.browser_call("alice", DAD)
    phone.standin.run()
    (dialled,) = phone.standin.children_of(root.sid)
    phone.standin.no_answer(dialled.sid)
    phone.standin.run()
    (action,) = phone.standin.deliveries_to("/voice/dial-complete")
    assert action.params["DialCallStatus"] == "no-answer" and "<Record" not in action.body
    assert not phone.standin.call(root.sid).active


def test_a_status_callback_naming_an_unknown_call_changes_nothing(phone):
    answer = phone.signed("/voice/status?call=CA" + "0" * 32, {
        "CallSid": "CA" + "5" * 32, "CallStatus": "completed", "From": TEAM, "To": "client:bob"})
    assert answer.status_code == 204
    assert phone.user("alice").get("/calls").get_json()["calls"] == []


@pytest.mark.parametrize("named_in_its_url", [True, False])
def test_a_rung_targets_status_reaches_control_and_never_the_call_log(phone, named_in_its_url):
    """Its callbacks have no ParentCallSid and come From the team number: found by the URL, or the party index."""
    root, _, bob = transfer_to_bob(phone, "warm")
    phone.events("alice", "call_notice")
    path = f"/voice/status?call={root.sid}" if named_in_its_url else "/voice/status"
    answer = phone.signed(path, {"CallSid": bob.sid, "CallStatus": "busy", "From": TEAM,
                                           "To": "client:bob", "SequenceNumber": "3"})
    assert answer.status_code == 204
    assert [n["notice"] for n in phone.events("alice", "call_notice")] == [
        "bob is busy; the caller is back with you."]
    assert phone.controls().get(root.sid).state.transfer is None
    (call,) = phone.user("alice").get("/calls").get_json()["calls"]
    assert call["call_sid"] == root.sid


def test_the_conference_callback_is_signed(phone):
    params = {"StatusCallbackEvent": "conference-end", "FriendlyName": "shetphone-CA" + "1" * 32,
              "ConferenceSid": "CF" + "1" * 32}
    assert phone.signed("/voice/conference", params, signature="wrong").status_code == 403
    assert phone.signed("/voice/conference", params).status_code == 204

