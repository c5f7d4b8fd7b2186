"""Do-not-disturb and who is on a call (shetphone.store.presence), on SQLite and PostgreSQL."""

from __future__ import annotations

from store_helpers import ALICE_NUMBER, callback, open_inbound, open_outbound

from shetphone.store import Store


def test_dnd_is_on_until_turned_off_and_outlives_the_store(database_url, clock):
    store = Store(database_url, clock=clock)
    try:
        assert store.presence.dnd_of({"alice", "bob"}) == frozenset()
        store.presence.set_dnd("alice", True)
        store.presence.set_dnd("alice", True)  # twice is once
        assert store.presence.dnd_of({"alice", "bob"}) == {"alice"}
    finally:
        store.close()
    reopened = Store(database_url, clock=clock)  # a restart
    try:
        assert reopened.presence.dnd_of({"alice", "bob"}) == {"alice"}
        reopened.presence.set_dnd("alice", False)
        reopened.presence.set_dnd("bob", False)  # off when off: nothing
        assert reopened.presence.dnd_of({"alice", "bob"}) == frozenset()
        assert reopened.presence.dnd_of(set()) == frozenset()
    finally:
        reopened.close()


def test_an_answered_incoming_call_makes_its_answerer_busy_until_it_ends(store):
    calls, presence = store.calls, store.presence
    open_inbound(calls, "CAroot")
    calls.record_status(callback("CAalice", "ringing", 0, parent="CAroot"))
    calls.record_status(callback("CAbob", "ringing", 0, parent="CAroot", To="client:bob"))
    assert presence.busy_of({"alice", "bob"}) == frozenset()  # ringing is not busy
    calls.record_status(callback("CAalice", "in-progress", 1, parent="CAroot"))
    calls.record_status(callback("CAbob", "canceled", 1, parent="CAroot", To="client:bob"))
    assert presence.busy_of({"alice", "bob", "carol"}) == {"alice"}
    calls.record_status(callback("CAalice", "completed", 2, parent="CAroot", CallDuration="5"))
    assert presence.busy_of({"alice", "bob"}) == frozenset()


def test_a_placed_call_makes_its_caller_busy_from_the_start_to_the_end(store):
    calls, presence = store.calls, store.presence
    open_outbound(calls, "CAout", "carol", "+441595000004", "+441595123456")
    assert presence.busy_of({"carol", "alice"}) == {"carol"}
    calls.record_status(callback("CAdial", "ringing", 0, parent="CAout", To="+441595123456"))
    assert presence.busy_of({"carol"}) == {"carol"}
    calls.record_status(callback("CAdial", "no-answer", 1, parent="CAout", To="+441595123456"))
    assert presence.busy_of({"carol"}) == frozenset()


def test_a_call_that_lost_its_last_callback_stops_counting_after_a_day(store, clock):
    calls = store.calls
    open_inbound(calls, "CAroot", number=ALICE_NUMBER)
    calls.record_status(callback("CAalice", "in-progress", 0, parent="CAroot"))
    assert store.presence.busy_of({"alice"}) == {"alice"}
    clock.advance(hours=24, seconds=1)
    assert store.presence.busy_of({"alice"}) == frozenset()  # the call log's LONGEST_CALL


def test_a_placed_call_twilio_never_reported_on_stops_counting_after_two_minutes(store, clock):
    open_outbound(store.calls, "CAout", "carol", "+441595000004", "+441595123456")
    clock.advance(minutes=1, seconds=59)
    assert store.presence.busy_of({"carol"}) == {"carol"}
    clock.advance(seconds=2)
    assert store.presence.busy_of({"carol"}) == frozenset()
    store.calls.record_status(callback("CAdial", "ringing", 0, parent="CAout", To="+441595123456"))
    assert store.presence.busy_of({"carol"}) == {"carol"}  # late, but news: it rings


def test_flags_of_answers_dnd_and_busy_together_as_each_alone_does(store):
    calls, presence = store.calls, store.presence
    presence.set_dnd("bob", True)
    open_inbound(calls, "CAroot")
    calls.record_status(callback("CAalice", "in-progress", 1, parent="CAroot"))
    users = {"alice", "bob", "carol"}
    assert presence.flags_of(users) == (presence.dnd_of(users), presence.busy_of(users)) == ({"bob"}, {"alice"})
    assert presence.flags_of(set()) == (frozenset(), frozenset())
