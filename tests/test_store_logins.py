"""The logins kept on the server (shetphone.store.logins), on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import sqlalchemy as sa
from conftest import FakeClock

from shetphone.store import Logins, Store, login_key, schema


def rows(store: Store) -> list:
    return store.database.read(lambda conn: conn.execute(sa.select(schema.logins)).all())


def last_seen(store: Store, login_id: str):
    (row,) = [row for row in rows(store) if row.id_hash == login_key(login_id)]
    return row.last_seen_at


def test_a_login_is_live_for_its_user_only_and_the_database_keeps_only_its_hash(store: Store) -> None:
    login_id = store.logins.begin("alice", "Mozilla/5.0 (X11; Linux x86_64)")
    assert store.logins.check(login_id, "alice")
    assert not store.logins.check(login_id, "bob")  # someone else's name with alice's id
    assert not store.logins.check(login_id + "x", "alice")
    assert not store.logins.check(None, "alice") and not store.logins.check("", "alice")
    (row,) = rows(store)
    assert row.user_name == "alice" and row.user_agent == "Mozilla/5.0 (X11; Linux x86_64)"
    assert row.id_hash == login_key(login_id) != login_id
    assert login_id not in repr(tuple(row))  # a copy of the table opens no session
    assert len(login_id) >= 40  # 32 random bytes


def test_every_login_has_its_own_id(store: Store) -> None:
    ids = {store.logins.begin("alice") for _ in range(20)}
    assert len(ids) == 20 and len(rows(store)) == 20


def test_an_ended_login_stays_ended(store: Store) -> None:
    first, second = store.logins.begin("alice"), store.logins.begin("alice")
    assert store.logins.end(first) is True
    assert store.logins.end(first) is False  # already ended
    assert not store.logins.check(first, "alice")
    assert store.logins.check(second, "alice")  # her other browser is still logged in


def test_ending_a_user_ends_all_their_logins_and_nobody_elses(store: Store) -> None:
    bobs = [store.logins.begin("bob") for _ in range(3)]
    alices = store.logins.begin("alice")
    assert store.logins.end_user("bob") == 3
    assert not any(store.logins.check(login_id, "bob") for login_id in bobs)
    assert store.logins.check(alices, "alice")
    assert store.logins.end_user("bob") == 0


def test_a_login_lasts_session_hours_without_use_and_each_use_slides_it(store: Store, clock: FakeClock) -> None:
    logins = Logins(store.database, session_hours=12, clock=clock)
    login_id = logins.begin("alice")
    for _ in range(3):  # used every 11 hours: 33 hours and still live
        clock.advance(hours=11)
        assert logins.check(login_id, "alice")
    clock.advance(hours=12)
    assert not logins.check(login_id, "alice")
    assert len(rows(store)) == 1  # refused at once; the hourly prune deletes it


def test_a_use_is_written_at_most_once_a_minute(store: Store, clock: FakeClock) -> None:
    logins = Logins(store.database, session_hours=12, clock=clock)
    login_id = logins.begin("alice")
    began = last_seen(store, login_id)
    clock.advance(seconds=59)
    assert logins.check(login_id, "alice")
    assert last_seen(store, login_id) == began  # a page load that costs a read, not a write
    clock.advance(seconds=1)
    assert logins.check(login_id, "alice")
    assert last_seen(store, login_id) == clock.now.replace(tzinfo=None)


def test_a_use_after_logout_writes_nothing_back(store: Store, clock: FakeClock) -> None:
    logins = Logins(store.database, session_hours=12, clock=clock)
    login_id = logins.begin("alice")
    clock.advance(minutes=5)
    logins.end(login_id)
    assert not logins.check(login_id, "alice")
    assert rows(store) == []


def test_prune_deletes_the_unused_logins_and_names_them(store: Store, clock: FakeClock) -> None:
    logins = Logins(store.database, session_hours=1, clock=clock)
    idle = [logins.begin("alice") for _ in range(3)]
    clock.advance(minutes=50)
    busy = logins.begin("bob")
    clock.advance(minutes=11)
    assert sorted(logins.prune(batch=2)) == sorted(login_key(login_id) for login_id in idle)  # in batches
    assert [row.id_hash for row in rows(store)] == [login_key(busy)]
    assert logins.prune() == []
    assert logins.check(busy, "bob")


def test_keep_alive_slides_the_logins_named_and_no_other(store: Store, clock: FakeClock) -> None:
    logins = Logins(store.database, session_hours=12, clock=clock)
    open_pages = [logins.begin("alice"), logins.begin("bob")]
    closed_page = logins.begin("carol")
    clock.advance(hours=11)
    keys = [login_key(login_id) for login_id in open_pages]
    assert logins.keep_alive([*keys, keys[0], login_key("no such login")], batch=1) == 2  # in batches
    assert logins.keep_alive(keys) == 0  # written again only after REFRESH
    clock.advance(hours=1, seconds=1)
    assert sorted(logins.prune()) == [login_key(closed_page)]
    assert all(logins.check(login_id, name) for login_id, name in zip(open_pages, ["alice", "bob"], strict=True))
    assert logins.keep_alive([]) == 0


def test_keep_alive_brings_no_ended_login_back(store: Store, clock: FakeClock) -> None:
    logins = Logins(store.database, session_hours=12, clock=clock)
    login_id = logins.begin("alice")
    logins.end(login_id)
    clock.advance(minutes=5)
    assert logins.keep_alive([login_key(login_id)]) == 0
    assert rows(store) == [] and not logins.check(login_id, "alice")


def test_a_long_user_agent_is_cut(store: Store) -> None:
    store.logins.begin("alice", "x" * 1000)
    store.logins.begin("bob", "")
    agents = {row.user_name: row.user_agent for row in rows(store)}
    assert agents == {"alice": "x" * 255, "bob": None}
