"""control.py, pure: every request and callback of SPEC §6 as state in, Twilio steps and state out."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from shetphone import control
from shetphone.control import (
    AddRequest,
    CancelRequest,
    CompleteRequest,
    ConferenceEvent,
    Destination,
    EndCall,
    EndConference,
    Hold,
    HoldRequest,
    MoveIntoConference,
    Party,
    Plan,
    RedirectCall,
    Refusal,
    Remove,
    Ring,
    TransferRequest,
)

ROOT = "CA" + "1" * 32
CHILD = "CA" + "2" * 32
BOB_CALL = "CA" + "3" * 32
CF = "CF" + "9" * 32
TEAM = "+441595000001"
CALLER = "+447700900123"
CONFERENCE_URL = "https://phone.example.test/voice/conference"
STATUS_URL = "https://phone.example.test/voice/status"
HOLD_URL = "https://phone.example.test/static/hold.mp3"
VOICEMAIL = "<Response><Say>Leave a message</Say><Record/></Response>"
CONFIG = control.ControlConfig(conference_status_url=CONFERENCE_URL, call_status_url=STATUS_URL, ring_timeout=20,
                               hold_url=HOLD_URL, voicemail_twiml=VOICEMAIL)
BOB = Destination("client", "bob")
MOBILE = Destination("number", "+447700900555")


def incoming() -> control.CallControl:
    """The caller rang the team number; alice's browser answered (the child leg)."""
    return control.call_state(ROOT, TEAM, "inbound", "alice", CALLER, CHILD)


def outgoing() -> control.CallControl:
    """alice's browser called a number (the root leg); the dialled number is the child."""
    return control.call_state(ROOT, TEAM, "outbound", "alice", CALLER, CHILD)


def in_conference(state: control.CallControl | None = None, **changes) -> control.CallControl:
    """Both legs joined the call's conference, whose SID Twilio has told."""
    state = state or incoming()
    parties = tuple(replace(p, status="joined") for p in state.parties)
    return replace(state, phase="conference", conference_sid=CF, parties=parties, **changes)


def plan(state, request, user="alice", config=CONFIG) -> Plan:
    outcome = control.plan_request(state, request, user, config)
    assert isinstance(outcome, Plan), outcome
    return outcome


def event(name: str, call_sid: str | None = None, sequence: int | None = None, **fields) -> ConferenceEvent:
    return ConferenceEvent(event=name, conference_sid=CF, friendly_name=control.conference_name_for(ROOT),
                           call_sid=call_sid, sequence=sequence, **fields)


def conference_attributes(document: str) -> tuple[str, dict]:
    root = ET.fromstring(document)
    (dial,) = root
    (conference,) = dial
    assert conference.tag == "Conference"
    return conference.text, conference.attrib


def bob_rung(state: control.CallControl, mode: str = "cold") -> control.CallControl:
    """``state`` once a transfer to bob has been planned and his call created (BOB_CALL)."""
    outcome = plan(state, TransferRequest(BOB, mode))
    return control.with_call_sid(outcome.state, "bob", BOB_CALL)


# ------------------------------------------------------------------------ the start


def test_an_incoming_call_the_caller_is_the_root_and_alice_the_child():
    state = incoming()
    assert state.phase == "bridged" and state.conference_name == "shetphone-" + ROOT
    assert (state.outside.call_sid, state.outside.name, state.outside.label) == (ROOT, CALLER, "outside")
    assert state.party(label="alice").call_sid == CHILD and state.user_on_call("alice")
    assert not state.user_on_call("bob")


def test_an_outgoing_call_alice_is_the_root_and_the_number_the_child():
    state = outgoing()
    assert state.outside.call_sid == CHILD and state.party(label="alice").call_sid == ROOT


@pytest.mark.parametrize("request_", [HoldRequest(True), TransferRequest(BOB, "cold"), AddRequest(BOB)])
def test_a_call_not_answered_yet_or_over_is_not_in_progress(request_):
    ringing = control.call_state(ROOT, TEAM, "inbound", "alice", CALLER, None, answered=False)
    assert ringing.phase == "ringing"
    assert control.plan_request(ringing, request_, "alice", CONFIG) == Refusal(409, "The call is not in progress.")
    ended = replace(in_conference(), phase="ended")
    assert control.plan_request(ended, request_, "alice", CONFIG).status == 409


def test_only_a_user_on_the_call_may_control_it():
    assert control.plan_request(incoming(), HoldRequest(True), "bob", CONFIG) == control.NOT_ON_CALL
    gone = control._replace_party(in_conference(), "alice", status="left")
    assert control.plan_request(gone, HoldRequest(True), "alice", CONFIG).status == 403


# --------------------------------------------------------------------------- hold


def test_the_first_hold_moves_the_child_into_the_conference_and_holds_once_the_caller_is_in():
    outcome = plan(incoming(), HoldRequest(True))
    (move,) = outcome.steps
    assert isinstance(move, MoveIntoConference) and move.call_sid == CHILD
    name, attributes = conference_attributes(move.twiml)
    assert name == "shetphone-" + ROOT
    assert attributes["participantLabel"] == "alice" and attributes["endConferenceOnExit"] == "false"
    assert attributes["statusCallback"] == CONFERENCE_URL
    assert attributes["statusCallbackEvent"] == "start end join leave hold" and attributes["beep"] == "false"
    state = outcome.state
    assert state.phase == "conference" and state.hold_wanted
    assert [p.status for p in state.parties] == ["connecting", "connecting"]
    assert outcome.early_state == state  # the parent's <Dial action> may come before the REST answer
    view = control.participants_view(state)
    assert view["conference"] is True and view["participants"][0]["held"] is True

    # The parent's <Dial> ended: its action joins the same conference, as the outside party.
    answer = control.on_dial_complete(state, CONFIG)
    name, attributes = conference_attributes(answer.twiml)
    assert name == "shetphone-" + ROOT and attributes["participantLabel"] == "outside"
    assert attributes["endConferenceOnExit"] == "true"
    assert answer.state == state

    started = control.on_conference_event(state, event("conference-start"), CONFIG)
    assert started.steps == () and started.state.conference_sid == CF
    joined = control.on_conference_event(started.state, event("participant-join", ROOT, 2, label="outside"), CONFIG)
    assert joined.steps == (Hold(CF, ROOT, True, HOLD_URL),)
    assert joined.state.outside.held and joined.state.outside.status == "joined"


def test_an_outgoing_calls_dialled_number_is_the_child_moved_and_ends_the_conference_on_exit():
    outcome = plan(outgoing(), HoldRequest(True))
    (move,) = outcome.steps
    assert move.call_sid == CHILD
    _, attributes = conference_attributes(move.twiml)
    assert attributes["participantLabel"] == "outside" and attributes["endConferenceOnExit"] == "true"
    answer = control.on_dial_complete(outcome.state, CONFIG)
    assert conference_attributes(answer.twiml)[1]["participantLabel"] == "alice"


def test_a_hold_taken_back_before_the_conference_exists_is_never_done():
    moving = plan(incoming(), HoldRequest(True)).state
    resumed = plan(moving, HoldRequest(False))
    assert resumed.steps == () and not resumed.state.hold_wanted  # no step, but a change to store
    started = control.on_conference_event(resumed.state, event("conference-start"), CONFIG).state
    assert control.on_conference_event(started, event("participant-join", ROOT, 2), CONFIG).steps == ()


def test_hold_and_resume_in_the_conference():
    held = plan(in_conference(), HoldRequest(True))
    assert held.steps == (Hold(CF, ROOT, True, HOLD_URL),) and held.early_state is None
    assert held.checkpoints == (held.state,) and held.state.outside.held
    resumed = plan(held.state, HoldRequest(False))
    assert resumed.steps == (Hold(CF, ROOT, False, None),)
    assert not resumed.state.outside.held and not resumed.state.hold_wanted


def test_twilios_default_music_when_no_hold_url():
    outcome = plan(in_conference(), HoldRequest(True), config=replace(CONFIG, hold_url=None))
    assert outcome.steps == (Hold(CF, ROOT, True, None),)


def test_asking_for_what_is_already_so_does_nothing():
    assert plan(incoming(), HoldRequest(False)) == Plan(steps=(), state=incoming())
    held = plan(in_conference(), HoldRequest(True)).state
    # bob pressed Hold too, after alice's hold was stored: nothing to do, no error
    three = replace(held, parties=(*held.parties, Party("CA" + "4" * 32, "bob", "client", "bob", "joined")))
    assert plan(three, HoldRequest(True), user="bob").steps == ()


def test_hold_events_keep_the_books_and_old_ones_are_ignored():
    state = in_conference()
    held = control.on_conference_event(state, event("participant-hold", ROOT, 5, hold=True), CONFIG)
    assert held.state.outside.held and held.steps == ()  # Twilio's word is kept; it calls for no step
    stale = control.on_conference_event(held.state, event("participant-unhold", ROOT, 4, hold=False), CONFIG)
    assert stale.state.outside.held
    # held by something else than us: Resume still takes the caller off hold
    assert plan(held.state, HoldRequest(False)).steps == (Hold(CF, ROOT, False, None),)
    muted = control.on_conference_event(state, event("participant-mute", CHILD, 6, muted=True), CONFIG)
    assert muted.state.party(label="alice").muted


def test_a_late_join_does_not_undo_a_hold_already_done():
    held = plan(in_conference(), HoldRequest(True)).state
    late = control.on_conference_event(held, event("participant-join", ROOT, 3, label="outside", hold=False), CONFIG)
    assert late.steps == () and late.state.outside.held


def test_the_dial_action_is_not_controls_when_nothing_moves():
    assert control.on_dial_complete(incoming(), CONFIG) is None
    assert control.on_dial_complete(in_conference(), CONFIG) is None  # the parent already joined


def test_events_of_another_conference_or_an_ended_call_change_nothing():
    state = in_conference()
    other = replace(event("participant-leave", ROOT), friendly_name="shetphone-CA" + "8" * 32)
    assert control.on_conference_event(state, other, CONFIG).state == state
    ended = replace(state, phase="ended")
    assert control.on_conference_event(ended, event("participant-join", ROOT), CONFIG).state == ended


# ------------------------------------------------------------------- cold transfer


def test_cold_transfer_rings_the_target_holds_the_caller_and_the_user_leaves():
    outcome = plan(in_conference(), TransferRequest(BOB, "cold"))
    assert outcome.steps == (
        Ring(conference_sid=CF, to="client:bob", from_=TEAM, label="bob", timeout=20, status_callback=STATUS_URL),
        Hold(CF, ROOT, True, HOLD_URL),
        Remove(CF, CHILD),
    )
    state = outcome.state
    assert state.transfer == control.TransferUnderWay(to=BOB, mode="cold", label="bob", by="alice")
    assert state.party(label="bob").status == "ringing" and state.party(label="alice").status == "left"
    assert [c.party(label="bob").status for c in outcome.checkpoints] == ["ringing"] * 3
    assert [c.outside.held for c in outcome.checkpoints] == [False, True, True]
    view = control.participants_view(state)
    assert view["transfer"] == {"to": "bob", "mode": "cold"}
    assert view["participants"][2] == {"call_sid": None, "label": "bob", "kind": "client", "name": "bob",
                                       "status": "ringing", "held": False, "muted": False}


def test_a_number_target_is_rung_as_itself():
    outcome = plan(in_conference(), TransferRequest(MOBILE, "cold"))
    assert outcome.steps[0].to == "+447700900555" and outcome.steps[0].label == "+447700900555"


def test_cold_transfer_answered_connects_the_caller():
    state = bob_rung(in_conference())
    answered = control.on_conference_event(state, event("participant-join", BOB_CALL, 7, label="bob"), CONFIG)
    assert answered.steps == (Hold(CF, ROOT, False, None),)
    assert answered.state.transfer is None and answered.state.party(label="bob").status == "joined"
    assert not answered.state.outside.held and answered.state.phase == "conference"


def test_cold_transfer_unanswered_sends_an_incoming_caller_to_the_numbers_voicemail():
    state = bob_rung(in_conference())
    for call_status in ("no-answer", "busy", "failed", "canceled"):
        outcome = control.on_call_status(state, BOB_CALL, call_status, CONFIG)
        assert outcome.steps == (RedirectCall(ROOT, VOICEMAIL),)
        assert outcome.state.phase == "ended" and outcome.state.transfer is None
        assert outcome.state.outside.status == "left"
    assert control.on_call_status(state, BOB_CALL, "busy", CONFIG).notices == (
        "bob is busy; the caller was sent to voicemail.",)


def test_cold_transfer_unanswered_without_voicemail_or_on_an_outgoing_call_tells_the_other_party_and_ends():
    quiet = replace(CONFIG, voicemail_twiml=None)
    for state, config in ((bob_rung(in_conference()), quiet), (bob_rung(in_conference(outgoing())), CONFIG)):
        outcome = control.on_call_status(state, BOB_CALL, "no-answer", config)
        (step,) = outcome.steps
        assert isinstance(step, RedirectCall) and step.call_sid == state.outside.call_sid
        root = ET.fromstring(step.twiml)
        assert [(verb.tag, verb.text) for verb in root] == [("Say", control.UNANSWERED_MESSAGE), ("Hangup", None)]
        assert outcome.notices == ("bob did not answer; the caller was told, and the call ended.",)


def test_the_conferences_leave_event_and_the_status_callback_are_one_no_answer():
    state = bob_rung(in_conference())
    left = control.on_conference_event(
        state, event("participant-leave", BOB_CALL, 8, label="bob", participant_call_status="no-answer"), CONFIG)
    assert left.steps == (RedirectCall(ROOT, VOICEMAIL),)
    again = control.on_call_status(left.state, BOB_CALL, "no-answer", CONFIG)
    assert again.steps == () and again.state == left.state


def test_a_target_ringing_or_answering_is_not_an_ending():
    state = bob_rung(in_conference())
    for call_status in ("initiated", "ringing", "in-progress"):
        assert control.on_call_status(state, BOB_CALL, call_status, CONFIG).state == state
    assert control.on_call_status(state, "CA" + "0" * 32, "completed", CONFIG).state == state
    assert control.on_call_status(incoming(), CHILD, "completed", CONFIG).state == incoming()


def test_cold_transfer_of_an_incoming_call_before_any_conference_hangs_up_the_users_leg():
    outcome = plan(incoming(), TransferRequest(BOB, "cold"))
    (move,) = outcome.steps
    assert move.call_sid == CHILD and [verb.tag for verb in ET.fromstring(move.twiml)] == ["Hangup"]
    state = outcome.state
    assert state.party(label="alice").status == "left" and state.party(label="bob").status == "pending"
    assert control.participants_view(state)["participants"][2]["status"] == "ringing"
    answer = control.on_dial_complete(state, CONFIG)
    assert conference_attributes(answer.twiml)[1]["participantLabel"] == "outside"
    # The conference's first callback brings its SID: bob is rung at once; the caller is held once in.
    started = control.on_conference_event(answer.state, event("conference-start", sequence=1), CONFIG)
    (ring,) = started.steps
    assert isinstance(ring, Ring) and ring.to == "client:bob" and ring.conference_sid == CF
    joined = control.on_conference_event(started.state, event("participant-join", ROOT, 2, label="outside"), CONFIG)
    assert joined.steps == (Hold(CF, ROOT, True, HOLD_URL),)


def test_cold_transfer_of_an_outgoing_call_before_any_conference_the_users_leg_leaves_at_its_dial_action():
    outcome = plan(outgoing(), TransferRequest(MOBILE, "cold"))
    (move,) = outcome.steps
    assert move.call_sid == CHILD and conference_attributes(move.twiml)[1]["participantLabel"] == "outside"
    answer = control.on_dial_complete(outcome.state, CONFIG)
    assert [verb.tag for verb in ET.fromstring(answer.twiml)] == ["Hangup"]
    assert answer.state.party(label="alice").status == "left"


# ------------------------------------------------------------------- warm transfer


def test_warm_transfer_rings_and_holds_and_the_user_stays():
    outcome = plan(in_conference(), TransferRequest(BOB, "warm"))
    assert [type(s) for s in outcome.steps] == [Ring, Hold]
    assert outcome.state.party(label="alice").status == "joined"
    joined = control.on_conference_event(control.with_call_sid(outcome.state, "bob", BOB_CALL),
                                         event("participant-join", BOB_CALL, 4, label="bob"), CONFIG)
    assert joined.steps == () and joined.state.transfer.mode == "warm" and joined.state.outside.held


def warm_with_bob_joined() -> control.CallControl:
    state = bob_rung(in_conference(), mode="warm")
    return control.on_conference_event(state, event("participant-join", BOB_CALL, 4, label="bob"), CONFIG).state


def test_completing_a_warm_transfer_connects_caller_and_target_and_the_user_leaves():
    outcome = plan(warm_with_bob_joined(), CompleteRequest())
    assert outcome.steps == (Remove(CF, CHILD), Hold(CF, ROOT, False, None))
    assert outcome.state.transfer is None and outcome.state.party(label="alice").status == "left"
    # alice's removal comes back as a leave event: no more steps, nobody is told anything
    left = control.on_conference_event(outcome.state, event("participant-leave", CHILD, 9, label="alice"), CONFIG)
    assert left.steps == () and left.notices == ()


def test_cancelling_a_warm_transfer_takes_the_target_off_and_the_caller_off_hold():
    outcome = plan(warm_with_bob_joined(), CancelRequest())
    assert outcome.steps == (Remove(CF, BOB_CALL), Hold(CF, ROOT, False, None))
    assert outcome.state.transfer is None and outcome.state.party(label="alice").status == "joined"


def test_cancelling_while_the_target_still_rings_hangs_up_its_call():
    outcome = plan(bob_rung(in_conference(), mode="warm"), CancelRequest())
    assert outcome.steps == (EndCall(BOB_CALL), Hold(CF, ROOT, False, None))
    # its call's end comes back later: nothing more happens
    assert control.on_call_status(outcome.state, BOB_CALL, "canceled", CONFIG).steps == ()


def test_completing_before_the_target_answers_leaves_a_cold_transfer():
    outcome = plan(bob_rung(in_conference(), mode="warm"), CompleteRequest())
    assert outcome.steps == (Remove(CF, CHILD),)
    assert outcome.state.transfer.mode == "cold" and outcome.state.outside.held


@pytest.mark.parametrize(("call_status", "said"), [("no-answer", "did not answer"), ("busy", "is busy")])
def test_warm_transfer_unanswered_tells_the_user_and_takes_the_caller_off_hold(call_status, said):
    outcome = control.on_call_status(bob_rung(in_conference(), mode="warm"), BOB_CALL, call_status, CONFIG)
    assert outcome.steps == (Hold(CF, ROOT, False, None),)
    assert outcome.state.transfer is None and outcome.state.party(label="alice").status == "joined"
    assert outcome.notices == (f"bob {said}; the caller is back with you.",)


def test_warm_target_hanging_up_puts_the_caller_back_with_the_user():
    outcome = control.on_conference_event(warm_with_bob_joined(), event("participant-leave", BOB_CALL, 10,
                                                                        label="bob"), CONFIG)
    assert outcome.steps == (Hold(CF, ROOT, False, None),)
    assert outcome.notices == ("bob hung up; the caller is back with you.",)


def test_the_users_browser_dropping_during_a_warm_transfer_hands_the_caller_to_the_target():
    outcome = control.on_conference_event(warm_with_bob_joined(), event("participant-leave", CHILD, 10,
                                                                        label="alice"), CONFIG)
    assert outcome.steps == (Hold(CF, ROOT, False, None),)
    assert outcome.state.transfer is None and outcome.state.phase == "conference"
    assert outcome.notices == ("alice left during the transfer; bob takes the call.",)


def test_the_users_browser_dropping_while_the_target_rings_makes_it_a_cold_transfer():
    ringing = bob_rung(in_conference(), mode="warm")
    dropped = control.on_conference_event(ringing, event("participant-leave", CHILD, 10, label="alice"), CONFIG)
    assert dropped.steps == () and dropped.state.transfer.mode == "cold" and dropped.state.outside.held
    # ...so the caller is never left on hold for ever: no answer sends them to voicemail
    unanswered = control.on_call_status(dropped.state, BOB_CALL, "no-answer", CONFIG)
    assert unanswered.steps == (RedirectCall(ROOT, VOICEMAIL),)


def test_a_second_transfer_while_one_is_under_way_is_refused_and_so_is_hold():
    state = bob_rung(in_conference(), mode="warm")
    assert control.plan_request(state, TransferRequest(MOBILE, "cold"), "alice", CONFIG) == control.TRANSFER_UNDER_WAY
    assert control.plan_request(state, AddRequest(MOBILE), "alice", CONFIG) == control.TRANSFER_UNDER_WAY
    assert control.plan_request(state, HoldRequest(False), "alice", CONFIG).status == 409


def test_complete_or_cancel_with_no_warm_transfer_is_refused():
    for state in (in_conference(), bob_rung(in_conference(), mode="cold")):
        three = replace(state, parties=(*state.parties, Party("CA" + "4" * 32, "carol", "client", "carol", "joined")))
        for request_ in (CompleteRequest(), CancelRequest()):
            assert control.plan_request(three, request_, "carol", CONFIG) == control.NO_TRANSFER


def test_targets_already_on_the_call_or_the_calls_own_number_are_refused():
    state = in_conference()
    assert control.plan_request(state, TransferRequest(Destination("client", "alice"), "cold"), "alice",
                                CONFIG) == Refusal(422, "alice is already on this call.")
    assert control.plan_request(state, AddRequest(Destination("number", CALLER)), "alice", CONFIG).status == 422
    assert control.plan_request(state, AddRequest(Destination("number", TEAM)), "alice", CONFIG) == Refusal(
        422, "That is this call's own number.")


# ------------------------------------------------------------------- three-way


def test_adding_rings_the_target_with_nobody_on_hold():
    outcome = plan(in_conference(), AddRequest(MOBILE))
    (ring,) = outcome.steps
    assert ring.to == "+447700900555" and outcome.state.transfer is None
    held = plan(plan(in_conference(), HoldRequest(True)).state, AddRequest(MOBILE))
    assert [type(s) for s in held.steps] == [Ring, Hold] and held.steps[1].hold is False


def test_adding_on_a_plain_call_first_moves_it_and_rings_once_the_conference_is_known():
    outcome = plan(incoming(), AddRequest(BOB))
    assert [type(s) for s in outcome.steps] == [MoveIntoConference]
    started = control.on_conference_event(outcome.state, event("conference-start", sequence=1), CONFIG)
    assert [type(s) for s in started.steps] == [Ring]


def test_an_added_party_who_does_not_answer_is_reported():
    added = control.with_call_sid(plan(in_conference(), AddRequest(BOB)).state, "bob", BOB_CALL)
    outcome = control.on_call_status(added, BOB_CALL, "no-answer", CONFIG)
    assert outcome.steps == () and outcome.notices == ("bob did not answer.",)
    assert outcome.state.party(label="bob").status == "left" and outcome.state.phase == "conference"


def test_labels_stay_unique_in_the_conference():
    added = control.with_call_sid(plan(in_conference(), AddRequest(BOB)).state, "bob", BOB_CALL)
    gone = control.on_call_status(added, BOB_CALL, "no-answer", CONFIG).state
    again = plan(gone, AddRequest(BOB))
    assert again.steps[0].label == "bob-2"


# ------------------------------------------------------------------- the ends


def test_the_caller_hanging_up_while_held_ends_it_for_everyone():
    held = plan(in_conference(), HoldRequest(True)).state
    outcome = control.on_conference_event(held, event("participant-leave", ROOT, 6, label="outside",
                                                      participant_call_status="completed"), CONFIG)
    # endConferenceOnExit ends the conference for alice's leg: nothing to ask Twilio
    assert outcome.steps == () and outcome.state.phase == "ended"
    assert not control.participants_view(outcome.state)["participants"][0]["held"]


def test_the_caller_hanging_up_during_a_transfer_stops_the_target_ringing():
    state = bob_rung(in_conference(), mode="warm")
    outcome = control.on_conference_event(state, event("participant-leave", ROOT, 6, label="outside"), CONFIG)
    assert outcome.steps == (EndCall(BOB_CALL),)
    assert outcome.state.transfer is None and outcome.state.party(label="bob").status == "left"


def test_the_conference_ending_ends_the_call_and_stops_any_ringing():
    state = bob_rung(in_conference(), mode="warm")
    outcome = control.on_conference_event(state, event("conference-end", sequence=11), CONFIG)
    assert outcome.steps == (EndCall(BOB_CALL),) and outcome.state.phase == "ended"
    assert {p.status for p in outcome.state.parties} == {"left"}
    later = control.on_conference_event(outcome.state, event("participant-leave", CHILD, 12), CONFIG)
    assert later.steps == ()


def test_when_only_the_caller_is_left_the_conference_ends():
    state = in_conference()
    three = replace(state, parties=(*state.parties, Party("CA" + "4" * 32, "bob", "client", "bob", "joined")))
    bob_left = control.on_conference_event(three, event("participant-leave", "CA" + "4" * 32, 3), CONFIG)
    assert bob_left.steps == ()  # alice is still there
    alone = control.on_conference_event(bob_left.state, event("participant-leave", CHILD, 4), CONFIG)
    assert alone.steps == (EndConference(CF),) and alone.state.phase == "ended"


def test_a_held_caller_whose_only_user_drops_is_not_left_on_hold():
    held = plan(in_conference(), HoldRequest(True)).state
    outcome = control.on_conference_event(held, event("participant-leave", CHILD, 4), CONFIG)
    assert outcome.steps == (EndConference(CF),)


def test_a_ringing_cold_target_keeps_the_conference_up_after_the_user_left():
    state = bob_rung(in_conference())
    outcome = control.on_conference_event(state, event("participant-leave", CHILD, 4, label="alice"), CONFIG)
    assert outcome.steps == () and outcome.state.phase == "conference"


# --------------------------------------------------------- a callback's step failing


def test_a_ring_that_fails_in_a_callbacks_plan_is_a_target_that_could_not_be_reached():
    started = control.on_conference_event(plan(incoming(), TransferRequest(BOB, "warm")).state,
                                          event("conference-start", sequence=1), CONFIG)
    (ring,) = started.steps
    warm = control.on_step_failed(started.state, ring, "Account not authorized", CONFIG)
    assert warm.state.transfer is None and not warm.state.hold_wanted
    assert warm.state.party(label="bob").status == "left"
    assert warm.notices == ("bob could not be reached; the caller is back with you.",)

    cold = control.on_conference_event(plan(incoming(), TransferRequest(BOB, "cold")).state,
                                       event("conference-start", sequence=1), CONFIG)
    joined = control.on_conference_event(cold.state, event("participant-join", ROOT, 2), CONFIG).state
    failed = control.on_step_failed(joined, cold.steps[0], "Account not authorized", CONFIG)
    assert failed.steps == (RedirectCall(ROOT, VOICEMAIL),)


def test_a_hold_that_fails_in_a_callbacks_plan_is_given_up_and_said():
    wanted = plan(incoming(), HoldRequest(True)).state
    started = control.on_conference_event(wanted, event("conference-start", sequence=1), CONFIG)
    joined = control.on_conference_event(started.state, event("participant-join", ROOT, 2), CONFIG)
    (hold,) = joined.steps
    assert joined.base.outside.status == "joined" and not joined.base.outside.held  # what stays if the hold fails
    given_up = control.on_step_failed(joined.base, hold, "Busy", CONFIG)
    assert given_up.steps == () and not given_up.state.hold_wanted
    assert given_up.notices == ("The caller could not be put on hold: Busy",)
    assert control.on_step_failed(joined.state, Remove(CF, CHILD), "x", CONFIG).state == joined.state


# ------------------------------------------------------------------ the pieces


def test_undo_of_each_step():
    assert control.undo_of(Hold(CF, ROOT, True, HOLD_URL)) == Hold(CF, ROOT, False, None)
    assert control.undo_of(Hold(CF, ROOT, False)) == Hold(CF, ROOT, True, None)
    ring = Ring(CF, "client:bob", TEAM, "bob", 20, STATUS_URL)
    assert control.undo_of(ring, BOB_CALL) == EndCall(BOB_CALL) and control.undo_of(ring) is None
    for step in (Remove(CF, CHILD), EndCall(CHILD), EndConference(CF), MoveIntoConference(CHILD, "x"),
                 RedirectCall(ROOT, "x")):
        assert control.undo_of(step) is None


def test_state_survives_the_store_as_plain_data():
    import json

    state = bob_rung(plan(in_conference(), HoldRequest(True)).state, mode="warm")
    assert control.CallControl.from_dict(json.loads(json.dumps(state.to_dict()))) == state
    assert control.CallControl.from_dict(incoming().to_dict()) == incoming()


def test_a_conference_callback_read_from_twilios_form():
    parsed = ConferenceEvent.from_form({
        "StatusCallbackEvent": "participant-leave", "ConferenceSid": CF, "FriendlyName": "shetphone-" + ROOT,
        "CallSid": CHILD, "ParticipantLabel": "alice", "Hold": "true", "Muted": "false", "SequenceNumber": "7",
        "ParticipantCallStatus": "completed"})
    assert parsed == ConferenceEvent("participant-leave", CF, "shetphone-" + ROOT, CHILD, "alice", True, False, 7,
                                     "completed")
    assert parsed.root_sid == ROOT
    bare = ConferenceEvent.from_form({"StatusCallbackEvent": "conference-start", "SequenceNumber": "x"})
    assert (bare.call_sid, bare.hold, bare.sequence) == (None, None, None)
    assert control.root_sid_of("someone-elses-room") is None and control.root_sid_of("shetphone-") is None


def test_the_view_of_a_plain_call():
    assert control.participants_view(incoming()) == {
        "call_sid": ROOT, "conference": False, "transfer": None,
        "participants": [
            {"call_sid": ROOT, "label": "outside", "kind": "number", "name": CALLER, "status": "joined",
             "held": False, "muted": False},
            {"call_sid": CHILD, "label": "alice", "kind": "client", "name": "alice", "status": "joined",
             "held": False, "muted": False},
        ]}


# ============================================================ against the Twilio stand-in
# The plans performed by twilio_rest on the stand-in, with tests/control_harness.py in the
# place of the store and routes: the edges of issue 11, as Twilio would play them.

PUBLIC = "https://phone.example.test"
GREETING = "Sorry, nobody can take your call."


@pytest.fixture
def wired(standin):
    from control_harness import ControlHarness

    from shetphone import twiml

    voicemail = twiml.voicemail(GREETING, None, PUBLIC + "/voice/recording", PUBLIC + "/voice/recorded")
    return ControlHarness(standin, PUBLIC, TEAM, ("alice", "bob"), replace(CONFIG, voicemail_twiml=voicemail),
                          voicemail)


def answered(standin, wired):
    """A caller rang the team number and alice answered: (root, alice's leg)."""
    root = standin.incoming_call(CALLER, TEAM).sid
    standin.run()
    (alice,) = [c for c in standin.children_of(root) if c.to == "client:alice"]
    standin.answer(alice.sid)
    standin.run()
    assert wired.states[root].phase == "bridged"
    return root, alice.sid


def rung(standin, to: str):
    (call,) = [c for c in standin.calls_to(to) if c.active]
    return call


def test_flow_hold_and_resume_a_plain_incoming_call(standin, wired):
    root, alice = answered(standin, wired)
    status, body = wired.request(root, "alice", HoldRequest(True))
    assert status == 200 and body["participants"][0]["held"] is True
    standin.run()  # the parent's <Dial action>, then the conference's callbacks
    conference = standin.conference_named("shetphone-" + root)
    assert set(conference.participants) == {root, alice}
    assert standin.participant(root).hold is True and standin.call(root).heard == ["hold:" + HOLD_URL]
    assert standin.participant(alice).hold is False
    assert wired.emitted[-1]["participants"][0]["held"] is True
    status, _ = wired.request(root, "alice", HoldRequest(False))
    standin.run()
    assert status == 200 and standin.participant(root).hold is False
    assert [p["status"] for p in wired.emitted[-1]["participants"]] == ["joined", "joined"]


def test_flow_hold_an_outgoing_call(standin, wired):
    root = standin.browser_call("alice", CALLER).sid
    standin.run()
    (number,) = standin.children_of(root)
    standin.answer(number.sid)
    standin.run()
    assert wired.request(root, "alice", HoldRequest(True))[0] == 200
    standin.run()
    assert standin.participant(number.sid).hold is True and standin.participant(root).hold is False


def test_flow_cold_transfer_answered(standin, wired):
    root, alice = answered(standin, wired)
    assert wired.request(root, "alice", TransferRequest(BOB, "cold"))[0] == 200
    standin.run()
    assert standin.call(alice).status == "completed"  # alice left at once
    bob = rung(standin, "client:bob")
    assert (bob.from_, standin.participant(root).hold) == (TEAM, True)
    standin.answer(bob.sid)
    standin.run()
    assert standin.participant(root).hold is False
    assert set(standin.conference_named("shetphone-" + root).participants) == {root, bob.sid}
    assert wired.emitted[-1]["transfer"] is None


def test_flow_cold_transfer_unanswered_the_caller_leaves_a_voicemail(standin, wired):
    root, _ = answered(standin, wired)
    wired.request(root, "alice", TransferRequest(BOB, "cold"))
    standin.run()
    standin.no_answer(rung(standin, "client:bob").sid)
    standin.run()
    caller = standin.call(root)
    assert caller.heard[-1] == "say:" + GREETING and caller.recording is not None
    assert standin.conference_named("shetphone-" + root).status == "completed"
    assert wired.notices[-1] == "bob did not answer; the caller was sent to voicemail."
    standin.finish_recording(root)
    standin.run()
    assert standin.deliveries_to("/voice/recording")[0].params["CallSid"] == root


def test_flow_cold_transfer_unanswered_on_an_outgoing_call_the_other_party_is_told(standin, wired):
    root = standin.browser_call("alice", CALLER).sid
    standin.run()
    (number,) = standin.children_of(root)
    standin.answer(number.sid)
    standin.run()
    wired.request(root, "alice", TransferRequest(MOBILE, "cold"))
    standin.run()
    assert standin.call(root).status == "completed"  # alice's browser leg left at its <Dial action>
    standin.no_answer(rung(standin, MOBILE.name).sid)
    standin.run()
    assert number.heard[-1] == "say:" + control.UNANSWERED_MESSAGE and number.status == "completed"


def warm_to_bob_answered(standin, wired):
    root, alice = answered(standin, wired)
    wired.request(root, "alice", TransferRequest(BOB, "warm"))
    standin.run()
    bob = rung(standin, "client:bob")
    standin.answer(bob.sid)
    standin.run()
    assert standin.participant(root).hold is True and standin.participant(alice).hold is False
    return root, alice, bob.sid


def test_flow_warm_transfer_completed(standin, wired):
    root, alice, bob = warm_to_bob_answered(standin, wired)
    assert wired.request(root, "alice", CompleteRequest())[0] == 200
    standin.run()
    assert set(standin.conference_named("shetphone-" + root).participants) == {root, bob}
    assert standin.participant(root).hold is False and standin.call(alice).status == "completed"


def test_flow_warm_transfer_cancelled(standin, wired):
    root, alice, bob = warm_to_bob_answered(standin, wired)
    assert wired.request(root, "alice", CancelRequest())[0] == 200
    standin.run()
    assert set(standin.conference_named("shetphone-" + root).participants) == {root, alice}
    assert standin.participant(root).hold is False and standin.call(bob).status == "completed"


def test_flow_warm_transfer_unanswered_tells_the_user_and_takes_the_caller_off_hold(standin, wired):
    root, alice = answered(standin, wired)
    wired.request(root, "alice", TransferRequest(BOB, "warm"))
    standin.run()
    standin.no_answer(rung(standin, "client:bob").sid)
    standin.run()
    assert standin.participant(root).hold is False and standin.participant(alice) is not None
    assert wired.notices == ["bob did not answer; the caller is back with you."]
    assert wired.emitted[-1]["transfer"] is None


def test_flow_the_users_browser_drops_during_a_warm_transfer(standin, wired):
    root, alice, bob = warm_to_bob_answered(standin, wired)
    standin.hang_up(alice)
    standin.run()
    assert standin.participant(root).hold is False  # not left on hold: with bob now
    assert set(standin.conference_named("shetphone-" + root).participants) == {root, bob}


def test_flow_the_users_browser_drops_while_the_warm_target_rings_then_no_answer(standin, wired):
    root, alice = answered(standin, wired)
    wired.request(root, "alice", TransferRequest(BOB, "warm"))
    standin.run()
    standin.hang_up(alice)
    standin.run()
    assert standin.participant(root).hold is True  # still waiting for bob...
    standin.no_answer(rung(standin, "client:bob").sid)
    standin.run()
    assert standin.call(root).heard[-1] == "say:" + GREETING  # ...who did not answer: voicemail, not hold for ever


def test_flow_three_way_call(standin, wired):
    root, _ = answered(standin, wired)
    assert wired.request(root, "alice", AddRequest(MOBILE))[0] == 200
    standin.run()
    standin.answer(rung(standin, MOBILE.name).sid)
    standin.run()
    conference = standin.conference_named("shetphone-" + root)
    assert len(conference.participants) == 3 and not any(p.hold for p in conference.participants.values())


def test_flow_the_caller_hanging_up_while_held_ends_it_and_every_team_leg_is_told(standin, wired):
    root, alice = answered(standin, wired)
    wired.request(root, "alice", AddRequest(BOB))
    standin.run()
    bob = rung(standin, "client:bob")
    standin.answer(bob.sid)
    standin.run()
    wired.request(root, "bob", HoldRequest(True))  # bob is on the call now: he may hold it
    standin.run()
    standin.hang_up(root)
    standin.run()
    assert standin.conference_named("shetphone-" + root).status == "completed"
    assert (standin.call(alice).status, bob.status) == ("completed", "completed")
    for leg in (alice, bob.sid):
        assert [d.params["CallStatus"] for d in standin.deliveries_to("/voice/status")
                if d.params["CallSid"] == leg][-1] == "completed"
    assert wired.states[root].phase == "ended"
    assert {p["status"] for p in wired.emitted[-1]["participants"]} == {"left"}


def test_flow_two_people_press_hold_at_once_one_wins_the_other_is_answered_409(standin, wired):
    root, _ = answered(standin, wired)
    wired.request(root, "alice", AddRequest(BOB))
    standin.run()
    standin.answer(rung(standin, "client:bob").sid)
    standin.run()
    holds_before = len([r for r in standin.requests_seen if r.param("Hold")])
    bobs: list = []
    standin.while_answering(lambda: bobs.append(wired.request(root, "bob", HoldRequest(True))),
                            path=r"/Participants/CA")
    alices = wired.request(root, "alice", HoldRequest(True))
    assert alices[0] == 200
    assert bobs == [(409, {"error": control.ANOTHER_CHANGE_UNDER_WAY.message})]
    assert len([r for r in standin.requests_seen if r.param("Hold")]) == holds_before + 1
    assert standin.participant(root).hold is True


def test_flow_twilio_failing_is_a_502_with_its_message_and_nothing_half_done(standin, wired):
    root, alice = answered(standin, wired)
    before = wired.states[root]
    standin.fail_next(400, "Call is not in-progress. Cannot redirect.", 21220, path=r"/Calls/CA")
    assert wired.request(root, "alice", HoldRequest(True)) == (
        502, {"error": "Call is not in-progress. Cannot redirect."})
    assert wired.states[root] == before
    standin.run()
    assert standin.conference_named("shetphone-" + root) is None  # still the plain call

    assert wired.request(root, "alice", HoldRequest(True))[0] == 200
    standin.run()
    held = wired.states[root]
    standin.unreachable = True
    status, body = wired.request(root, "alice", TransferRequest(BOB, "cold"))
    standin.unreachable = False
    assert status == 502 and "Twilio could not be reached" in body["error"]
    assert wired.states[root] == held
    assert [c for c in standin.calls_to("client:bob") if c.direction == "outbound-api"] == []  # never rung
    assert standin.participant(alice) is not None and standin.participant(root).hold is True


def test_flow_twilios_dial_action_may_come_before_its_rest_answer(standin, wired):
    root, alice = answered(standin, wired)
    standin.while_answering(standin.run, path=r"/Calls/CA")  # callbacks first, the REST answer after
    assert wired.request(root, "alice", HoldRequest(True))[0] == 200
    standin.run()
    assert set(standin.conference_named("shetphone-" + root).participants) == {root, alice}
    assert standin.participant(root).hold is True


def test_flow_a_deferred_ring_that_twilio_refuses_sends_the_caller_to_voicemail(standin, wired):
    root, _ = answered(standin, wired)
    standin.fail_next(400, "Account not authorized to call client:bob", 21215, path=r"/Participants\.json$")
    assert wired.request(root, "alice", TransferRequest(BOB, "cold"))[0] == 200  # only the move, so far
    standin.run()
    assert standin.call(root).heard[-1] == "say:" + GREETING
    assert wired.notices == ["bob could not be reached; the caller was sent to voicemail."]
