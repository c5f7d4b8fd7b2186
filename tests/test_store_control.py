"""store/control.py on SQLite and PostgreSQL: the state, the claim (one wins), the inbox, the party index."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest
import sqlalchemy as sa
from store_helpers import ALICE_NUMBER, CALLER, callback, open_inbound

from shetphone import control
from shetphone.store import Store, schema

ROOT = "CA" + "1" * 32
CHILD = "CA" + "2" * 32
RUNG = "CA" + "3" * 32
CONFIG = control.ControlConfig(conference_status_url="https://x.test/voice/conference",
                               call_status_url="https://x.test/voice/status", ring_timeout=20)


def bridged() -> control.CallControl:
    return control.call_state(ROOT, ALICE_NUMBER, "inbound", "alice", CALLER, CHILD)


def hold(hold: bool = True, user: str = "alice"):
    return lambda state: control.plan_request(state, control.HoldRequest(hold), user, CONFIG)


@pytest.fixture
def controls(store):
    open_inbound(store.calls, ROOT)
    return store.control


def test_a_first_request_stores_the_call_indexes_its_parties_and_claims_it(controls):
    begun = controls.begin(ROOT, "token-a", hold(), initial=bridged())
    assert begun.claimed and begun.before == bridged()
    assert isinstance(begun.outcome, control.Plan) and begun.outcome.steps
    stored = controls.get(ROOT)
    # The early state is in the store before any step runs: the <Dial action> reads it.
    assert stored.state == begun.outcome.early_state and stored.state.phase == "conference"
    assert stored.claimed and stored.version == 1
    assert controls.root_of(ROOT) == ROOT and controls.root_of(CHILD) == ROOT
    assert controls.root_of(RUNG) is None


def test_a_call_never_under_control_is_none_without_an_initial_state(controls):
    assert controls.begin(ROOT, "token", hold()) is None
    assert controls.get(ROOT) is None


def test_a_refusal_changes_nothing(controls):
    begun = controls.begin(ROOT, "token", hold(user="bob"), initial=bridged())
    assert begun.outcome == control.NOT_ON_CALL and not begun.claimed
    stored = controls.get(ROOT)
    assert stored.state == bridged() and stored.version == 0 and not stored.claimed


def test_while_the_claim_is_held_another_request_is_told_another_change_is_under_way(controls):
    first = controls.begin(ROOT, "alice-hold", hold(), initial=bridged())
    assert first.claimed
    second = controls.begin(ROOT, "bob-hold", hold(False), initial=bridged())
    assert second.outcome == control.ANOTHER_CHANGE_UNDER_WAY and not second.claimed
    assert controls.get(ROOT).state == first.outcome.early_state  # the loser changed nothing

    assert controls.store(ROOT, "alice-hold", first.outcome.state)
    assert controls.next_or_release(ROOT, "alice-hold") is None  # empty inbox: let go
    assert not controls.get(ROOT).claimed
    assert controls.begin(ROOT, "bob-hold", hold(False)).outcome != control.ANOTHER_CHANGE_UNDER_WAY


def test_a_plan_without_steps_stores_its_change_and_takes_no_claim(controls):
    moving = controls.begin(ROOT, "a", hold(), initial=bridged())
    controls.store(ROOT, "a", moving.outcome.state)
    controls.next_or_release(ROOT, "a")
    # Resume before the conference exists: nothing for Twilio to do, but the wish changes.
    resumed = controls.begin(ROOT, "b", hold(False))
    assert resumed.outcome.steps == () and not resumed.claimed
    stored = controls.get(ROOT)
    assert not stored.state.hold_wanted and not stored.claimed


def test_callbacks_while_the_claim_is_held_wait_in_the_inbox_in_order(controls):
    controls.begin(ROOT, "request", hold(), initial=bridged())
    assert controls.enqueue(ROOT, "callback-1", "conference", {"StatusCallbackEvent": "conference-start"}) is False
    assert controls.enqueue(ROOT, "callback-2", "status", {"call_sid": RUNG, "status": "no-answer"}) is False
    # The holder applies them, oldest first, before letting go.
    assert controls.next_or_release(ROOT, "request") == ("conference", {"StatusCallbackEvent": "conference-start"})
    assert controls.next_or_release(ROOT, "request") == ("status", {"call_sid": RUNG, "status": "no-answer"})
    assert controls.next_or_release(ROOT, "request") is None
    assert not controls.get(ROOT).claimed
    assert controls.next_or_release(ROOT, "request") is None  # not the holder any more: nothing


def test_a_callback_when_nobody_holds_the_claim_takes_it_and_drains_its_own(controls):
    controls.begin(ROOT, "t", lambda state: control.Plan(steps=(), state=state), initial=bridged())
    assert controls.enqueue(ROOT, "callback", "dial", {}) is True
    assert controls.get(ROOT).claimed
    assert controls.next_or_release(ROOT, "callback") == ("dial", {})
    assert controls.next_or_release(ROOT, "callback") is None


def test_a_callback_for_a_call_not_under_control_is_not_kept(controls, store):
    assert controls.enqueue(ROOT, "t", "conference", {}) is None
    with store.database.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.control_inbox)) == 0


def test_a_claim_left_by_a_holder_that_died_is_taken_over(controls, clock):
    controls.begin(ROOT, "dead", hold(), initial=bridged())
    clock.advance(seconds=30)
    assert controls.begin(ROOT, "alive", hold(False)).outcome == control.ANOTHER_CHANGE_UNDER_WAY
    clock.advance(seconds=31)  # the claim is over a minute old: its process died mid-plan
    assert controls.enqueue(ROOT, "alive", "dial", {}) is True
    assert controls.store(ROOT, "dead", bridged()) is False  # the dead holder's late write is dropped
    assert controls.next_or_release(ROOT, "alive") == ("dial", {})


def test_rung_parties_are_indexed_when_their_call_sid_is_stored(controls):
    begun = controls.begin(ROOT, "t", hold(), initial=bridged())
    target = control.Party(call_sid=RUNG, label="bob", kind="client", name="bob", status="ringing")
    with_target = replace(begun.outcome.state, parties=(*begun.outcome.state.parties, target))
    assert controls.store(ROOT, "t", with_target)
    assert controls.root_of(RUNG) == ROOT
    assert controls.get(ROOT).state.party(label="bob").call_sid == RUNG


def test_the_answered_leg_of_a_call_comes_from_the_call_log(controls, store):
    assert controls.call_facts("CA" + "9" * 32) is None
    facts = controls.call_facts(ROOT)
    assert (facts.direction, facts.number, facts.from_, facts.answered) == ("inbound", ALICE_NUMBER, CALLER, None)
    store.calls.record_status(callback("CA" + "8" * 32, "ringing", 0, parent=ROOT, To="client:bob"))
    store.calls.record_status(callback(CHILD, "ringing", 0, parent=ROOT))
    store.calls.record_status(callback(CHILD, "in-progress", 1, parent=ROOT))
    store.calls.record_status(callback("CA" + "8" * 32, "canceled", 1, parent=ROOT, To="client:bob"))
    assert controls.call_facts(ROOT).answered == (CHILD, "client:alice", "in-progress")


def test_the_calls_in_their_conference_are_listed_oldest_first_and_none_older_than_a_day(controls, store, clock):
    later = "CA" + "4" * 32
    never_moved = "CA" + "5" * 32
    assert controls.in_conference() == []
    first = controls.begin(ROOT, "t", hold(), initial=bridged())  # in its conference from the first step
    clock.advance(seconds=5)
    for root in (later, never_moved):
        open_inbound(store.calls, root)
    second = controls.begin(later, "t", hold(), initial=replace(bridged(), root_sid=later))
    # A request refused changes nothing but leaves the bridged call's row: it is not in a conference.
    controls.begin(never_moved, "t", hold(user="bob"), initial=replace(bridged(), root_sid=never_moved))
    assert controls.in_conference() == [first.outcome.early_state, second.outcome.early_state]

    moved = first.outcome.early_state
    end = control.ConferenceEvent("conference-end", "CF" + "1" * 32, moved.conference_name)
    controls.store(ROOT, "t", control.on_conference_event(moved, end, CONFIG).state)
    assert controls.in_conference() == [second.outcome.early_state]
    clock.advance(days=1, seconds=10)  # a conference whose end was never told is not shown for ever
    assert controls.in_conference() == []


def test_pruning_a_call_removes_its_control_rows(controls, store, clock):
    controls.begin(ROOT, "t", hold(), initial=bridged())
    controls.enqueue(ROOT, "c", "dial", {})
    clock.advance(days=91)
    assert store.calls.prune() == 1
    assert controls.get(ROOT) is None and controls.root_of(CHILD) is None
    with store.database.engine.connect() as conn:
        assert conn.scalar(sa.select(sa.func.count()).select_from(schema.control_inbox)) == 0


def test_two_processes_pressing_hold_at_once_one_claims_and_the_other_waits_for_its_commit(database_url, clock):
    """Two stores on one database (two processes): the second never decides on what the first has not committed."""
    first, second = Store(database_url, clock=clock), Store(database_url, clock=clock)
    try:
        open_inbound(first.calls, ROOT)
        first.control.begin(ROOT, "setup", lambda state: control.Plan(steps=(), state=state), initial=bridged())
        first_inside, second_decided = threading.Event(), threading.Event()
        decided_while_first_was_open = []

        def first_decides(state):
            first_inside.set()
            # Hold the transaction open a while: a second transaction that could read the row
            # now (no lock) would decide during this wait.
            decided_while_first_was_open.append(second_decided.wait(1.0))
            return hold()(state)

        def second_decides(state):
            second_decided.set()
            return hold()(state)

        outcomes = {}
        thread = threading.Thread(target=lambda: outcomes.update(first=first.control.begin(ROOT, "a", first_decides)))
        thread.start()
        assert first_inside.wait(10)
        outcomes["second"] = second.control.begin(ROOT, "b", second_decides)
        thread.join(10)
        assert decided_while_first_was_open == [False]
        assert outcomes["first"].claimed
        assert outcomes["second"].outcome == control.ANOTHER_CHANGE_UNDER_WAY
    finally:
        first.close()
        second.close()
