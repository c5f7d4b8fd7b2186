"""The contract of the mail outbox (shetphone.mail.Outbox and OutboxWriter), for every implementation.

A test module subclasses :class:`OutboxContract` as ``TestSomething`` and
gives an ``outbox`` fixture; every test here then runs against it (the
in-memory outbox in test_mail.py; the store's, once it has one).
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

from shetphone.mail import LEASE_SECONDS, TRANSCRIPT_WAIT, Voicemail

NOW = 1_800_000_000.0


def voicemail(sid: str = "RE" + "1" * 32, transcript: str | None = None) -> Voicemail:
    return Voicemail(recording_sid=sid, caller="+441595123456", number="+441595000001", duration=42,
                     received_at=datetime.fromtimestamp(NOW, UTC), transcript=transcript)


class OutboxContract:
    def test_a_row_per_address_claimed_with_its_voicemail(self, outbox):
        assert outbox.add(voicemail(), ["alice@example.test", "bob@example.test"], now=NOW) == 2
        first = outbox.claim(NOW, LEASE_SECONDS)
        second = outbox.claim(NOW, LEASE_SECONDS)
        assert {first.address, second.address} == {"alice@example.test", "bob@example.test"}
        assert first.voicemail == voicemail() and first.failures == 0 and first.created_at == NOW
        assert first.id != second.id
        assert outbox.claim(NOW, LEASE_SECONDS) is None

    def test_adding_again_adds_nothing(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        assert outbox.add(voicemail(), ["alice@example.test", "Alice@Example.test"], now=NOW + 5) == 0
        item = outbox.claim(NOW + 5, LEASE_SECONDS)
        outbox.sent(item.id)
        assert outbox.add(voicemail(), ["alice@example.test"], now=NOW + 10) == 0  # sent is final too
        assert outbox.claim(NOW + 10, LEASE_SECONDS) is None

    def test_a_claimed_row_is_nobody_elses_until_its_lease_runs_out(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        item = outbox.claim(NOW, 60)
        assert outbox.claim(NOW + 59, 60) is None
        again = outbox.claim(NOW + 61, 60)  # its process died mid-send
        assert again is not None and again.id == item.id

    def test_sent_is_never_claimed_again(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        outbox.sent(outbox.claim(NOW, 60).id)
        assert outbox.claim(NOW + 10 * LEASE_SECONDS, 60) is None

    def test_a_retry_is_due_at_its_time_with_one_more_failure(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        item = outbox.claim(NOW, LEASE_SECONDS)
        outbox.retry(item.id, NOW + 30, "451 busy")
        assert outbox.claim(NOW + 29, LEASE_SECONDS) is None
        again = outbox.claim(NOW + 30, LEASE_SECONDS)  # the lease was released with the retry
        assert again.id == item.id and again.failures == 1 and again.created_at == NOW

    def test_given_up_is_never_claimed_again(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        outbox.give_up(outbox.claim(NOW, 60).id, "550 no such user")
        assert outbox.claim(NOW + 10 * LEASE_SECONDS, 60) is None

    def test_a_released_row_is_due_at_once_with_no_failure_counted(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        item = outbox.claim(NOW, LEASE_SECONDS)
        assert outbox.release(item) is True  # a stopping sender gives it back untried
        again = outbox.claim(NOW + 1, LEASE_SECONDS)  # another sender, long before the lease would have run out
        assert again.id == item.id and again.failures == 0 and again.created_at == NOW
        assert outbox.release(item) is False  # the old claim no longer holds it ...
        assert outbox.claim(NOW + 2, LEASE_SECONDS) is None  # ... and the new one still does

    def test_a_released_row_keeps_its_place_in_the_queue(self, outbox):
        outbox.add(voicemail("RE" + "a" * 32), ["first@example.test"], now=NOW)
        outbox.add(voicemail("RE" + "b" * 32), ["second@example.test"], now=NOW + 1)
        first = outbox.claim(NOW + 5, LEASE_SECONDS)
        outbox.release(first)
        assert outbox.claim(NOW + 6, LEASE_SECONDS).address == "first@example.test"

    def test_releasing_a_claim_whose_lease_ran_out_and_was_claimed_again_changes_nothing(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        stale = outbox.claim(NOW, 60)
        current = outbox.claim(NOW + 61, 60)  # the first sender hung past its lease; another took the row
        assert current.id == stale.id
        assert outbox.release(stale) is False
        assert outbox.claim(NOW + 62, 60) is None  # still the second sender's
        assert outbox.release(current) is True
        assert outbox.claim(NOW + 62, 60).id == current.id

    def test_a_row_sent_retried_or_given_up_is_not_released(self, outbox):
        outbox.add(voicemail(), ["sent@example.test", "retried@example.test", "dropped@example.test"], now=NOW)
        items = {item.address: item for item in (outbox.claim(NOW, 60) for _ in range(3))}
        outbox.sent(items["sent@example.test"].id)
        outbox.retry(items["retried@example.test"].id, NOW + 300, "451 busy")
        outbox.give_up(items["dropped@example.test"].id, "550 no")
        assert [outbox.release(item) for item in items.values()] == [False, False, False]
        assert outbox.claim(NOW + 299, 60) is None  # nothing sent twice, the back-off kept
        assert outbox.claim(NOW + 300, 60).address == "retried@example.test"

    def test_the_row_due_first_is_claimed_first(self, outbox):
        outbox.add(voicemail("RE" + "a" * 32), ["late@example.test"], now=NOW, wait_for_transcript=True)
        outbox.add(voicemail("RE" + "b" * 32), ["early@example.test"], now=NOW + 1)
        assert outbox.claim(NOW + TRANSCRIPT_WAIT + 1, 60).address == "early@example.test"

    def test_a_mail_waits_for_its_transcript_up_to_a_minute(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW, wait_for_transcript=True)
        assert outbox.claim(NOW + TRANSCRIPT_WAIT - 1, 60) is None
        item = outbox.claim(NOW + TRANSCRIPT_WAIT, 60)
        assert item is not None and item.voicemail.transcript is None

    def test_the_transcript_makes_the_mail_due_at_once_and_goes_with_it(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW, wait_for_transcript=True)
        outbox.add_transcript(voicemail().recording_sid, "Call me back, please.", now=NOW + 12)
        item = outbox.claim(NOW + 12, 60)
        assert item.voicemail.transcript == "Call me back, please."
        assert item.voicemail.recording_sid == voicemail().recording_sid

    def test_a_failed_transcription_releases_the_mail_without_one(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW, wait_for_transcript=True)
        outbox.add_transcript(voicemail().recording_sid, None, now=NOW + 3)
        item = outbox.claim(NOW + 3, 60)
        assert item is not None and item.voicemail.transcript is None

    def test_a_transcript_does_not_cut_a_back_off_short(self, outbox):
        outbox.add(voicemail(), ["alice@example.test"], now=NOW)
        outbox.retry(outbox.claim(NOW, 60).id, NOW + 300, "421 down")
        outbox.add_transcript(voicemail().recording_sid, "Hello.", now=NOW + 10)
        assert outbox.claim(NOW + 10, 60) is None
        assert outbox.claim(NOW + 300, 60).voicemail.transcript == "Hello."

    def test_concurrent_claims_take_each_row_once(self, outbox):
        addresses = [f"user{n}@example.test" for n in range(40)]
        outbox.add(voicemail(), addresses, now=NOW)
        claimed: list[str] = []
        lock = threading.Lock()

        def worker() -> None:
            while (item := outbox.claim(NOW, LEASE_SECONDS)) is not None:
                with lock:
                    claimed.append(item.address)

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(claimed) == sorted(addresses)
