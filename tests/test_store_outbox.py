"""The store's voicemail e-mail outbox (shetphone.store.outbox) on SQLite and on a real PostgreSQL server.

The contract every outbox keeps is tests/outbox_contract.py; here it runs on the
store, and beside it what only the store does: transcripts kept with the
recording, the outbox rows written in the recording's own transaction, claims
from two processes, pruning.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import ROOT
from outbox_contract import NOW, OutboxContract, voicemail
from store_helpers import ALICE_NUMBER, CALLER, open_inbound

from shetphone.mail import LEASE_SECONDS, Voicemail
from shetphone.store import Store

RECORDING = "RE" + "1" * 32


class TestStoreOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self, store):
        return store.outbox


def test_a_row_keeps_its_first_spelling_and_its_state(store):
    outbox = store.outbox
    assert outbox.add(voicemail(), ["Alice@Example.test", "alice@example.test", " bob@example.test "], now=NOW) == 2
    assert outbox.status(RECORDING, "alice@example.test") == ("queued", 0, None)
    addresses = {outbox.claim(NOW, 60).address, outbox.claim(NOW, 60).address}
    assert addresses == {"Alice@Example.test", "bob@example.test"}


def test_the_voicemail_comes_back_as_it_went_in_with_its_zone(store):
    store.outbox.add(voicemail(transcript="Hello."), ["alice@example.test"], now=NOW)
    item = store.outbox.claim(NOW, 60)
    assert item.voicemail == voicemail(transcript="Hello.")
    assert item.voicemail.received_at.utcoffset() is not None


def test_retry_and_give_up_keep_the_error_and_count_the_failures(store):
    outbox = store.outbox
    outbox.add(voicemail(), ["alice@example.test"], now=NOW)
    outbox.retry(outbox.claim(NOW, 60).id, NOW + 30, "451 busy")
    assert outbox.status(RECORDING, "alice@example.test") == ("queued", 1, "451 busy")
    outbox.give_up(outbox.claim(NOW + 30, 60).id, "550 no")
    assert outbox.status(RECORDING, "alice@example.test") == ("given up", 2, "550 no")


def test_the_recording_and_its_rows_are_written_together(store):
    open_inbound(store.calls, "CAroot")

    def rows(conn, facts):
        vm = Voicemail(facts["recording_sid"], facts["from"], facts["number"], facts["duration"],
                       received_at=voicemail().received_at)
        store.outbox.add_in(conn, vm, ["alice@example.test"], now=NOW)

    facts = store.calls.record_voicemail("CAroot", recording_sid=RECORDING, recording_url="https://x/RE1",
                                         duration=9, also=rows)
    assert facts["number"] == ALICE_NUMBER
    item = store.outbox.claim(NOW, 60)
    assert (item.voicemail.caller, item.voicemail.number, item.voicemail.duration) == (CALLER, ALICE_NUMBER, 9)

    def broken(conn, facts):
        store.outbox.add_in(conn, voicemail("RE" + "2" * 32), ["alice@example.test"], now=NOW)
        raise RuntimeError("the process died mid-write")

    with pytest.raises(RuntimeError):
        store.calls.record_voicemail("CAroot", recording_sid="RE" + "2" * 32, recording_url="https://x/RE2",
                                     duration=3, also=broken)
    assert store.calls.recording_for("RE" + "2" * 32) is None  # neither the recording ...
    with pytest.raises(KeyError):  # ... nor its mail
        store.outbox.status("RE" + "2" * 32, "alice@example.test")


def test_a_transcript_is_kept_with_the_recording_and_listed(store):
    open_inbound(store.calls, "CAroot")
    store.calls.record_voicemail("CAroot", recording_sid=RECORDING, recording_url="https://x/RE1", duration=9)
    (entry,) = store.calls.calls_for([ALICE_NUMBER], None)
    assert entry["voicemail_transcript"] is None
    facts = store.outbox.transcribed(RECORDING, "Call me back, please.", now=NOW)
    assert facts == {"call_sid": "CAroot", "number": ALICE_NUMBER, "from": CALLER, "duration": 9,
                     "recording_sid": RECORDING, "transcript": "Call me back, please."}
    (entry,) = store.calls.calls_for([ALICE_NUMBER], None)
    assert entry["voicemail_transcript"] == "Call me back, please."
    assert store.outbox.transcribed("RE" + "9" * 32, "Nobody's.", now=NOW) is None


def test_a_failed_transcription_leaves_no_text(store):
    open_inbound(store.calls, "CAroot")
    store.calls.record_voicemail("CAroot", recording_sid=RECORDING, recording_url="https://x/RE1", duration=9)
    assert store.outbox.transcribed(RECORDING, None, now=NOW)["transcript"] is None
    assert store.calls.calls_for([ALICE_NUMBER], None)[0]["voicemail_transcript"] is None


def test_pruning_forgets_what_is_done_and_keeps_what_is_not(store):
    outbox = store.outbox
    outbox.add(voicemail("RE" + "a" * 32), ["sent@example.test"], now=NOW)
    outbox.add(voicemail("RE" + "b" * 32), ["queued@example.test"], now=NOW, wait_for_transcript=True)
    outbox.sent(outbox.claim(NOW, 60).id)
    assert outbox.prune(NOW + 1) == 1
    assert outbox.status("RE" + "b" * 32, "queued@example.test")[0] == "queued"
    with pytest.raises(KeyError):
        outbox.status("RE" + "a" * 32, "sent@example.test")


CLAIMER = """
import sys
sys.path.insert(0, {root!r})
from shetphone.store import Store
store = Store(sys.argv[1])
claimed = []
while (item := store.outbox.claim({now}, {lease})) is not None:
    claimed.append(item.address)
print(" ".join(claimed))
store.close()
"""


def test_two_processes_claim_each_row_once(database_url):
    store = Store(database_url)
    try:
        addresses = [f"user{n}@example.test" for n in range(60)]
        for n in range(3):
            store.outbox.add(voicemail(f"RE{n:032x}"), addresses[n * 20:(n + 1) * 20], now=NOW)
    finally:
        store.close()
    script = CLAIMER.format(root=str(ROOT), now=NOW, lease=LEASE_SECONDS)
    claimers = [subprocess.Popen([sys.executable, "-c", script, database_url], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(2)]
    claimed = []
    for claimer in claimers:
        out, err = claimer.communicate(timeout=120)
        assert claimer.returncode == 0, err
        claimed += out.split()
    assert sorted(claimed) == sorted(addresses)
