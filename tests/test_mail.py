"""Voicemail by e-mail: the mail itself, smtp_url, the retry schedule, and delivery through a real SMTP server
(aiosmtpd, started here: plain, STARTTLS, SMTPS, AUTH, down and refusing).

Time in the sender loop is a fake clock; the network is real.
"""

from __future__ import annotations

import itertools
import logging
import threading
from contextlib import closing
from datetime import UTC, datetime, timedelta, timezone

import pytest
from deployment_helpers import wait_until
from outbox_contract import NOW, OutboxContract, voicemail
from smtp_helpers import SmtpServer

from shetphone.mail import (
    LEASE_SECONDS,
    TRANSCRIPT_WAIT,
    InMemoryOutbox,
    MailError,
    MailSender,
    RetrySchedule,
    SmtpConfig,
    SmtpSender,
    Voicemail,
    caller_name,
    compose,
    is_loopback,
    length_text,
    message_id,
)
from shetphone.store import Store

SID = "RE" + "0123456789abcdef" * 2
AUDIO = bytes(range(256)) * 64  # every byte value: the attachment must come back bit for bit
SENDER = "Shetphone <phone@example.test>"
PAGE = "https://phone.example.test/"
CET = timezone(timedelta(hours=1), "CET")
WHEN = datetime(2026, 11, 22, 16, 3, 27, tzinfo=UTC)
ALIASES = {"+441595123456": "Mum"}


def a_voicemail(**changes) -> Voicemail:
    fields = {"recording_sid": SID, "caller": "+441595123456", "number": "+441595000001", "duration": 42,
              "received_at": WHEN, "transcript": None, **changes}
    return Voicemail(**fields)


def mail(vm: Voicemail | None = None, audio: bytes | None = AUDIO, recipient: str = "alice@example.test"):
    return compose(vm or a_voicemail(), sender=SENDER, recipient=recipient, audio=audio, page_url=PAGE,
                   alias_for=ALIASES.get, local_zone=CET)


def bodies(message) -> tuple[str, str]:
    return (message.get_body(("plain",)).get_content(), message.get_body(("html",)).get_content())


# ----------------------------------------------------------------------------- the mail


def test_the_subject_names_the_caller_by_alias_the_number_called_and_the_length():
    assert mail()["Subject"] == "Voicemail from Mum on +44 1595 000001 (0:42)"


def test_a_caller_without_an_alias_is_the_formatted_number():
    message = mail(a_voicemail(caller="+12025550123", duration=3725))
    assert message["Subject"] == "Voicemail from +1 202-555-0123 on +44 1595 000001 (1:02:05)"
    text, _ = bodies(message)
    assert text.startswith("+1 202-555-0123 left a voicemail on +44 1595 000001.")


def test_a_withheld_caller_says_so():
    message = mail(a_voicemail(caller="anonymous"))
    assert message["Subject"] == "Voicemail from a withheld number on +44 1595 000001 (0:42)"
    assert bodies(message)[0].startswith("A withheld number left a voicemail")


def test_the_plain_body_has_the_time_both_ways_the_length_and_the_link():
    text, _ = bodies(mail())
    assert "Mum (+44 1595 123456) left a voicemail on +44 1595 000001." in text
    assert "2026-11-22T16:03:27Z" in text
    assert "Sunday 22 November 2026, 17:03:27 CET (server time)" in text
    assert "Length: 0:42" in text
    assert PAGE in text
    assert "Transcript" not in text
    assert "The recording is attached." in text


def test_the_transcript_is_in_both_bodies_and_escaped_in_html():
    transcript = "Hi, it's Mum.\nCall me <back> & soon."
    text, page = bodies(mail(a_voicemail(transcript=transcript)))
    assert "Transcript:\n  Hi, it's Mum.\n  Call me <back> & soon." in text
    assert "Call me &lt;back&gt; &amp; soon." in page
    assert "<back>" not in page


def test_the_html_body_links_to_the_page_with_the_time():
    _, page = bodies(mail())
    assert f'<a href="{PAGE}">' in page
    assert '<time datetime="2026-11-22T16:03:27Z">' in page
    assert "17:03:27 CET" in page


def test_the_recording_is_attached_bit_for_bit():
    (attachment,) = list(mail().iter_attachments())
    assert attachment.get_filename() == f"voicemail-{SID}.mp3"
    assert attachment.get_content_type() == "audio/mpeg"
    assert attachment.get_content() == AUDIO


def test_without_the_recording_the_mail_says_where_to_hear_it():
    message = mail(audio=None)
    assert list(message.iter_attachments()) == []
    assert "could not be attached; listen to it on the page" in bodies(message)[0]


def test_headers():
    message = mail()
    assert message["From"] == SENDER and message["To"] == "alice@example.test"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == "Sun, 22 Nov 2026 16:03:27 +0000"
    assert message["Message-ID"] == message_id(SID, "alice@example.test", SENDER)
    assert message["Message-ID"].endswith("@example.test>")
    # One per recording and address: the same for a copy, another for another address.
    assert mail()["Message-ID"] == message["Message-ID"]
    assert mail(recipient="bob@example.test")["Message-ID"] != message["Message-ID"]


def test_small_pieces():
    assert caller_name("+441595123456", ALIASES.get) == "Mum"
    assert caller_name("+441595123457", ALIASES.get) == "+44 1595 123457"
    assert caller_name("restricted", ALIASES.get) == "a withheld number"
    assert [length_text(s) for s in (0, 9, 60, 3600)] == ["0:00", "0:09", "1:00", "1:00:00"]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("smtp.example.org") and not is_loopback("192.0.2.1")


# ----------------------------------------------------------------------------- smtp_url


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.org", SmtpConfig("mail.example.org", 25, False)),
        ("smtp://u:p@mail.example.org:587", SmtpConfig("mail.example.org", 587, False, "u", "p")),
        ("smtps://mail.example.org", SmtpConfig("mail.example.org", 465, True)),
        ("smtps://alice%40example.org:p%40ss%3Aw%2Frd@mail.example.org:465/",
         SmtpConfig("mail.example.org", 465, True, "alice@example.org", "p@ss:w/rd")),
        ("smtp://[::1]:2525", SmtpConfig("::1", 2525, False)),
    ],
)
def test_smtp_url(url, expected):
    assert SmtpConfig.from_url(url) == expected


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("http://mail.example.org", "must start with smtp:// or smtps://, not http"),
        ("mail.example.org", "must start with smtp:// or smtps://, not nothing"),
        ("smtp://", "names no host"),
        ("smtp://mail.example.org:99999", "has a port that is not a number"),
        ("smtp://mail.example.org:abc", "has a port that is not a number"),
        ("smtp://mail.example.org/inbox?x=1", "has a path or query"),
        ("smtp://alice@mail.example.org", "has a user name without a password"),
    ],
)
def test_a_bad_smtp_url_is_one_clear_line(url, complaint):
    with pytest.raises(ValueError, match="^" + complaint) as refused:
        SmtpConfig.from_url(url)
    assert "\n" not in str(refused.value)


def test_the_password_never_shows():
    config = SmtpConfig.from_url("smtp://alice:s3cret@mail.example.org:587")
    assert "s3cret" not in repr(config)
    assert config.describe() == "smtp://alice@mail.example.org:587"
    assert SmtpConfig.from_url("smtps://[::1]").describe() == "smtps://[::1]:465"


# ----------------------------------------------------------------------------- retries


def test_the_back_off_doubles_up_to_ten_minutes():
    schedule = RetrySchedule()
    assert [schedule.delay(n) for n in range(1, 9)] == [30, 60, 120, 240, 480, 600, 600, 600]


def test_retries_last_an_hour_and_the_last_try_is_at_the_hour():
    schedule = RetrySchedule()
    now, failures, tries = NOW, 0, []
    while (due := schedule.next_try(NOW, failures + 1, now)) is not None:
        failures += 1
        tries.append(due - NOW)
        now = due
    assert tries[:5] == [30, 90, 210, 450, 930]
    assert tries[-1] == 3600  # one last try at the hour, never past it
    assert all(b > a for a, b in itertools.pairwise(tries))
    assert schedule.next_try(NOW, 1, NOW + 3600) is None


# ----------------------------------------------------------------------------- the in-memory outbox


class TestInMemoryOutbox(OutboxContract):
    @pytest.fixture
    def outbox(self):
        return InMemoryOutbox()


# ----------------------------------------------------------------------------- a real SMTP server


@pytest.fixture
def smtp_server():
    started: list[SmtpServer] = []

    def make(**options) -> SmtpServer:
        server = SmtpServer(**options).start()
        started.append(server)
        return server

    yield make
    for server in started:
        server.stop()


def test_plain_delivery_to_a_loopback_server(smtp_server):
    server = smtp_server()
    SmtpSender(SmtpConfig.from_url(server.url())).send(mail())
    (received,) = server.inbox.received
    assert received.mail_from == "phone@example.test" and received.rcpt_tos == ["alice@example.test"]
    assert not received.encrypted
    message = received.message()
    assert message["Subject"] == "Voicemail from Mum on +44 1595 000001 (0:42)"
    (attachment,) = list(message.iter_attachments())
    assert attachment.get_filename() == f"voicemail-{SID}.mp3" and attachment.get_content() == AUDIO


def test_a_bad_goodbye_after_the_message_was_taken_is_no_failure(smtp_server):
    server = smtp_server()
    server.inbox.quit_reply = "500 5.0.0 Goodbye yourself"
    SmtpSender(SmtpConfig.from_url(server.url())).send(mail())  # no MailError: a retry would be a second copy
    assert len(server.inbox.received) == 1


@pytest.mark.parametrize("required", [True, False])
def test_starttls_is_used_whenever_offered(smtp_server, tls_certificate, required):
    server = smtp_server(mode="starttls", certificate=tls_certificate, require_tls=required)
    SmtpSender(SmtpConfig.from_url(server.url()), ssl_context=server.client_context()).send(mail())
    (received,) = server.inbox.received
    assert received.encrypted


def test_an_untrusted_certificate_stops_the_mail(smtp_server, tls_certificate):
    server = smtp_server(mode="starttls", certificate=tls_certificate)
    with pytest.raises(MailError, match="certificate verify failed") as failed:
        SmtpSender(SmtpConfig.from_url(server.url())).send(mail())  # the system's CAs do not know it
    assert str(failed.value).startswith(f"smtp://127.0.0.1:{server.port}: ")
    assert server.inbox.received == []


def test_smtps(smtp_server, tls_certificate):
    server = smtp_server(mode="smtps", certificate=tls_certificate)
    SmtpSender(SmtpConfig.from_url(server.url()), ssl_context=server.client_context()).send(mail())
    (received,) = server.inbox.received
    assert received.encrypted


def test_authentication_with_url_encoded_credentials(smtp_server, tls_certificate):
    user, password = "alice@example.test", "p@ss:w/rd %"
    server = smtp_server(mode="starttls", certificate=tls_certificate, users={user: password})
    sender = SmtpSender(SmtpConfig.from_url(server.url(user, password)), ssl_context=server.client_context())
    sender.send(mail())
    (received,) = server.inbox.received
    assert received.login == user and received.encrypted


def test_a_wrong_password_is_a_mail_error(smtp_server, tls_certificate):
    server = smtp_server(mode="starttls", certificate=tls_certificate, users={"alice": "right"})
    sender = SmtpSender(SmtpConfig.from_url(server.url("alice", "wrong")), ssl_context=server.client_context())
    with pytest.raises(MailError, match="535") as failed:
        sender.send(mail())
    assert "wrong" not in str(failed.value)
    assert server.inbox.received == []


@pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS")
def test_a_password_goes_in_the_clear_only_to_loopback(smtp_server):
    server = smtp_server(users={"alice": "pw"}, auth_over_plain=True)
    SmtpSender(SmtpConfig.from_url(server.url("alice", "pw"))).send(mail())
    assert server.inbox.received[0].login == "alice"


def test_hello_reports_what_it_did(smtp_server, tls_certificate):
    server = smtp_server(mode="starttls", certificate=tls_certificate, users={"alice": "pw"})
    sender = SmtpSender(SmtpConfig.from_url(server.url("alice", "pw")), ssl_context=server.client_context())
    assert sender.hello() == f"smtp://alice@127.0.0.1:{server.port} said hello; STARTTLS; authenticated as alice"
    assert server.inbox.received == []


def test_hello_to_nobody_is_one_line(smtp_server):
    server = smtp_server()
    server.stop()
    with pytest.raises(MailError, match=f"^smtp://127.0.0.1:{server.port}: .*refused") as failed:
        SmtpSender(SmtpConfig.from_url(server.url(), timeout=5)).hello()
    assert "\n" not in str(failed.value)


# ----------------------------------------------------------------------------- the sender loop


class FakeClock:
    def __init__(self, now: float = NOW) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Recordings:
    """Twilio's recordings, as the fetch callable sees them; can fail the next fetches."""

    def __init__(self) -> None:
        self.fail_next = 0
        self.fetched: list[str] = []

    def __call__(self, recording_sid: str) -> bytes:
        self.fetched.append(recording_sid)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("Twilio's media host did not answer")
        return AUDIO


def make_sender(outbox, server: SmtpServer, clock: FakeClock, recordings=None, **options) -> MailSender:
    transport = SmtpSender(SmtpConfig.from_url(server.url(), timeout=5))
    return MailSender(outbox, transport.send, recordings or Recordings(), mail_from=SENDER, page_url=PAGE,
                      alias_for=ALIASES.get, clock=clock, local_zone=CET, **options)


def test_each_member_gets_their_own_mail_once(smtp_server):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    outbox.add(voicemail(SID), ["alice@example.test", "bob@example.test"], now=clock.now)
    sender = make_sender(outbox, server, clock)
    assert sender.run_once() == 2
    assert sender.run_once() == 0
    received = sorted(server.inbox.received, key=lambda r: r.rcpt_tos)
    assert [r.rcpt_tos for r in received] == [["alice@example.test"], ["bob@example.test"]]
    assert [r.message()["To"] for r in received] == ["alice@example.test", "bob@example.test"]
    assert outbox.status(SID, "alice@example.test") == ("sent", 0, None)


def test_a_server_down_then_up_gets_the_mail_on_a_retry(smtp_server, caplog):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    outbox.add(voicemail(SID), ["alice@example.test"], now=clock.now)
    sender = make_sender(outbox, server, clock)
    server.stop()
    with caplog.at_level(logging.WARNING, logger="shetphone.mail"):
        assert sender.run_once() == 1
    status, failures, error = outbox.status(SID, "alice@example.test")
    assert (status, failures) == ("queued", 1) and "refused" in error
    assert f"voicemail {SID} to alice@example.test failed (attempt 1), trying again in 30 s" in caplog.text

    server.start()  # the same port
    clock.now += 29
    assert sender.run_once() == 0  # not yet due
    clock.now += 1
    assert sender.run_once() == 1
    assert len(server.inbox.received) == 1
    assert outbox.status(SID, "alice@example.test")[0] == "sent"


def test_a_refusal_is_logged_and_retried(smtp_server, caplog):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    server.inbox.refuse_next = 2
    outbox.add(voicemail(SID), ["alice@example.test"], now=clock.now)
    sender = make_sender(outbox, server, clock)
    with caplog.at_level(logging.WARNING, logger="shetphone.mail"):
        sender.run_once()
        clock.now += 30
        sender.run_once()
        clock.now += 60
        sender.run_once()
    assert caplog.text.count("451 4.3.0 Mailbox busy, try again later") == 2
    assert "attempt 2), trying again in 60 s" in caplog.text
    assert len(server.inbox.received) == 1
    last_error = f"smtp://127.0.0.1:{server.port}: 451 4.3.0 Mailbox busy, try again later"
    assert outbox.status(SID, "alice@example.test") == ("sent", 2, last_error)


def test_a_mail_is_never_dropped_before_the_hour_and_given_up_after(smtp_server, caplog):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    server.inbox.refuse_next = 10_000
    server.inbox.refusal = "554 5.7.1 Rejected"
    outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender = make_sender(outbox, server, clock)
    attempts = 0
    with caplog.at_level(logging.WARNING, logger="shetphone.mail"):
        while outbox.status(SID, "alice@example.test")[0] == "queued":
            assert clock.now <= NOW + 3600  # still queued means still being tried within the hour
            if sender.run_once():
                attempts += 1
            clock.now += 15
    status, failures, error = outbox.status(SID, "alice@example.test")
    assert status == "given up" and failures == attempts and "554 5.7.1 Rejected" in error
    assert attempts == 11  # at 0, 30, 90, 210, 450, 930, 1530, 2130, 2730, 3330 and 3600 s
    assert "gave up on voicemail" in caplog.text and caplog.records[-1].levelno == logging.ERROR
    assert server.inbox.received == []


def test_a_failed_fetch_is_retried_and_the_mail_keeps_its_attachment(smtp_server):
    server, clock, outbox, recordings = smtp_server(), FakeClock(), InMemoryOutbox(), Recordings()
    recordings.fail_next = 1
    outbox.add(voicemail(SID), ["alice@example.test"], now=clock.now)
    sender = make_sender(outbox, server, clock, recordings)
    sender.run_once()
    assert server.inbox.received == []
    assert "fetching the recording: Twilio's media host did not answer" in outbox.status(SID, "alice@example.test")[2]
    clock.now += 30
    sender.run_once()
    (received,) = server.inbox.received
    (attachment,) = list(received.message().iter_attachments())
    assert attachment.get_content() == AUDIO


def test_when_the_recording_never_comes_the_mail_goes_without_it(smtp_server):
    server, clock, outbox, recordings = smtp_server(), FakeClock(), InMemoryOutbox(), Recordings()
    recordings.fail_next = 10_000
    outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender = make_sender(outbox, server, clock, recordings)
    while not server.inbox.received:
        assert clock.now <= NOW + 3600
        sender.run_once()
        clock.now += 15
    assert list(server.inbox.received[0].message().iter_attachments()) == []
    assert "could not be attached" in server.inbox.received[0].text()
    assert outbox.status(SID, "alice@example.test")[0] == "sent"


def test_two_senders_share_the_outbox_and_send_each_mail_once(smtp_server):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    addresses = [f"user{n}@example.test" for n in range(12)]
    for n in range(3):
        outbox.add(voicemail(f"RE{n:032x}"), addresses, now=clock.now)
    senders = [make_sender(outbox, server, clock) for _ in range(2)]
    threads = [threading.Thread(target=sender.run_once) for sender in senders]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    delivered = [(r.message()["Message-ID"], r.rcpt_tos[0]) for r in server.inbox.received]
    assert len(delivered) == 36 and len(set(delivered)) == 36


def test_the_mail_waits_for_the_transcript_and_carries_it(smtp_server):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    outbox.add(voicemail(SID), ["alice@example.test"], now=clock.now, wait_for_transcript=True)
    sender = make_sender(outbox, server, clock)
    assert sender.run_once() == 0
    clock.now += 20
    assert sender.run_once() == 0
    outbox.add_transcript(SID, "Hello, it's Mum. Call me back.", now=clock.now)
    assert sender.run_once() == 1
    text = server.inbox.received[0].text()
    assert "Transcript:\n  Hello, it's Mum. Call me back." in text


def test_without_a_transcript_the_mail_goes_after_a_minute(smtp_server):
    server, clock, outbox = smtp_server(), FakeClock(), InMemoryOutbox()
    outbox.add(voicemail(SID), ["alice@example.test"], now=clock.now, wait_for_transcript=True)
    sender = make_sender(outbox, server, clock)
    clock.now += TRANSCRIPT_WAIT - 1
    assert sender.run_once() == 0
    clock.now += 1
    assert sender.run_once() == 1
    assert "Transcript" not in server.inbox.received[0].text()


def test_run_forever_sends_when_woken_and_stops(smtp_server):
    server, outbox = smtp_server(), InMemoryOutbox()
    sender = make_sender(outbox, server, FakeClock(), idle_seconds=3600)
    thread = threading.Thread(target=sender.run_forever, daemon=True)
    thread.start()
    outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender.wake()
    wait_until(lambda: len(server.inbox.received) == 1, "the woken sender to send", timeout=30)
    sender.stop()
    thread.join(30)
    assert not thread.is_alive()


def test_run_forever_survives_an_outbox_failure(smtp_server, caplog):
    class BrokenOnce(InMemoryOutbox):
        broken = True

        def claim(self, now, lease):
            if self.broken:
                self.broken = False
                raise RuntimeError("database is locked")
            return super().claim(now, lease)

    server, outbox = smtp_server(), BrokenOnce()
    outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender = make_sender(outbox, server, FakeClock(), idle_seconds=3600)
    thread = threading.Thread(target=sender.run_forever, daemon=True)
    with caplog.at_level(logging.ERROR, logger="shetphone.mail"):
        thread.start()
        wait_until(lambda: "the outbox failed" in caplog.text, "the failure to be logged", timeout=30)
        sender.wake()
        wait_until(lambda: len(server.inbox.received) == 1, "the sender to recover", timeout=30)
    sender.stop()
    thread.join(30)


# ----------------------------------------------------------------------------- a clean stop


class Gate:
    """Holds the call it is put in until the test opens it; tells the test the call has begun."""

    def __init__(self) -> None:
        self.entered = threading.Event()
        self.opened = threading.Event()

    def hold(self) -> None:
        self.entered.set()
        assert self.opened.wait(30), "the test never opened the gate"

    def wait_entered(self) -> None:
        assert self.entered.wait(30), "the held call never began"


class HeldRecordings(Recordings):
    """A recording fetch that waits at ``gate`` (Twilio being slow as the process stops), then answers or fails."""

    def __init__(self, gate: Gate, fail: bool = False) -> None:
        super().__init__()
        self.gate = gate
        self.fail_next = 1 if fail else 0

    def __call__(self, recording_sid: str) -> bytes:
        self.gate.hold()
        return super().__call__(recording_sid)


def in_background(work) -> threading.Thread:
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    return thread


def test_a_stop_gives_back_the_row_it_claimed_and_another_sender_sends_it_once(smtp_server, store, database_url):
    server, gate = smtp_server(), Gate()
    store.outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    stopping = make_sender(store.outbox, server, FakeClock(), HeldRecordings(gate))
    first = in_background(stopping.run_once)
    gate.wait_entered()  # claimed, fetching the recording
    stopping.stop()
    assert store.outbox.status(SID, "alice@example.test") == ("queued", 0, None)  # not a failure
    with closing(Store(database_url)) as other:  # another process, a second after, not ten minutes
        assert make_sender(other.outbox, server, FakeClock(NOW + 1)).run_once() == 1
    gate.opened.set()  # the stopped sender's fetch comes back: it must not send, nor write the row
    first.join(30)
    assert not first.is_alive()
    (received,) = server.inbox.received
    assert received.rcpt_tos == ["alice@example.test"]
    assert store.outbox.status(SID, "alice@example.test") == ("sent", 0, None)


def test_a_fetch_failing_after_the_stop_leaves_the_new_claim_alone(smtp_server, store, database_url):
    server, gate = smtp_server(), Gate()
    store.outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    stopping = make_sender(store.outbox, server, FakeClock(), HeldRecordings(gate, fail=True))
    first = in_background(stopping.run_once)
    gate.wait_entered()
    stopping.stop()
    with closing(Store(database_url)) as other:
        taken = other.outbox.claim(NOW + 1, LEASE_SECONDS)  # another process has it now
        gate.opened.set()
        first.join(30)
        assert store.outbox.status(SID, "alice@example.test") == ("queued", 0, None)  # no failure written
        assert other.outbox.claim(NOW + 2, LEASE_SECONDS) is None  # and its lease not cut short
        assert other.outbox.release(taken) is True
    assert server.inbox.received == []


def test_a_stop_during_a_claim_gives_that_row_back_untried(smtp_server):
    server, recordings = smtp_server(), Recordings()

    class StopDuringClaim(InMemoryOutbox):
        def claim(self, now, lease):
            item = super().claim(now, lease)
            sender.stop(wait=0)  # SIGTERM while the claim's transaction is in flight
            return item

    outbox = StopDuringClaim()
    outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender = make_sender(outbox, server, FakeClock(), recordings)
    assert sender.run_once() == 0
    assert recordings.fetched == [] and server.inbox.received == []
    assert InMemoryOutbox.claim(outbox, NOW + 1, LEASE_SECONDS).failures == 0  # due again at once


def test_a_send_under_way_at_the_stop_is_finished_and_stays_sent(smtp_server, store, database_url):
    server, gate, order = smtp_server(), Gate(), []
    store.outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    transport = SmtpSender(SmtpConfig.from_url(server.url(), timeout=5))

    def slow_send(message) -> None:  # the SMTP exchange under way as the stop comes
        gate.hold()
        transport.send(message)
        order.append("delivered")

    sender = MailSender(store.outbox, slow_send, Recordings(), mail_from=SENDER, page_url=PAGE, clock=FakeClock())
    first = in_background(sender.run_once)
    gate.wait_entered()
    stopper = in_background(lambda: (sender.stop(), order.append("stopped")))
    stopper.join(1)  # room for a stop that does not wait to return early (it must not)
    gate.opened.set()
    stopper.join(30)
    first.join(30)
    assert order == ["delivered", "stopped"]  # stop() waited for the outcome: never given back mid-send
    assert store.outbox.status(SID, "alice@example.test") == ("sent", 0, None)
    with closing(Store(database_url)) as other:
        assert other.outbox.claim(NOW + 10 * LEASE_SECONDS, LEASE_SECONDS) is None
    assert len(server.inbox.received) == 1


def test_a_mail_delivered_just_before_the_stop_stays_sent(smtp_server, store, database_url):
    server = smtp_server()
    store.outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender = make_sender(store.outbox, server, FakeClock())
    assert sender.run_once() == 1
    sender.stop()
    assert store.outbox.status(SID, "alice@example.test") == ("sent", 0, None)
    with closing(Store(database_url)) as other:
        assert make_sender(other.outbox, server, FakeClock(NOW + 1)).run_once() == 0
        assert make_sender(other.outbox, server, FakeClock(NOW + 10 * LEASE_SECONDS)).run_once() == 0
    assert len(server.inbox.received) == 1


def test_a_stop_that_cannot_give_the_row_back_says_so_in_one_line(smtp_server, caplog):
    server, gate = smtp_server(), Gate()

    class Unreachable(InMemoryOutbox):
        def release(self, item):
            raise RuntimeError("the database did not answer within 2 s")

    outbox = Unreachable()
    outbox.add(voicemail(SID), ["alice@example.test"], now=NOW)
    sender = make_sender(outbox, server, FakeClock(), HeldRecordings(gate))
    first = in_background(sender.run_once)
    gate.wait_entered()
    with caplog.at_level(logging.WARNING, logger="shetphone.mail"):
        sender.stop()  # never raises: shut_down goes on
    gate.opened.set()
    first.join(30)
    (warning,) = [record.getMessage() for record in caplog.records if record.levelno == logging.WARNING]
    assert warning == (f"mail: stopping, voicemail {SID} to alice@example.test could not be given back; "
                       "it goes when its lease runs out: the database did not answer within 2 s")
    assert server.inbox.received == []
    assert outbox.claim(NOW + LEASE_SECONDS - 1, LEASE_SECONDS) is None  # its lease stands
    assert outbox.claim(NOW + LEASE_SECONDS, LEASE_SECONDS) is not None
