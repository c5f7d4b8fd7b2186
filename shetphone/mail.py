"""Voicemail by e-mail (SPEC §8): the mail, the SMTP sender, the retry schedule and the sender loop.

The loop works off an outbox: one row per recording and address, added by
the recording webhook, claimed by one process at a time (a lease), marked
sent, rescheduled with the error, or given up after an hour of retries. The
store implements :class:`Outbox` (and :class:`OutboxWriter` for the
webhooks); :class:`InMemoryOutbox` is the same contract in one process, for
tests and as the reference. The recording's audio comes from a callable
(``recording sid -> bytes``), so Twilio's REST seam stays in one place.

Exactly once: a row is claimed in one transaction, so two processes never
send it at the same time; a process that dies between the SMTP server's
"250 OK" and marking the row sent leaves a lease that runs out, and the row
is sent again. That second copy has the same Message-ID (it is derived from
the recording and the address), so mail clients can fold it into the first.
A process stopped cleanly does not leave its lease to run out: it gives back
the row it claimed and had not yet handed to SMTP (:meth:`MailSender.stop`).
"""

from __future__ import annotations

import hashlib
import html
import ipaddress
import logging
import smtplib
import ssl
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, tzinfo
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from typing import Protocol
from urllib.parse import unquote, urlsplit

import phonenumbers

log = logging.getLogger(__name__)

TRANSCRIPT_WAIT = 60.0  # seconds a mail waits for its transcript (SPEC §8)
LEASE_SECONDS = 600.0  # a claimed row is another process's again after this long (longer than any SMTP exchange)
SMTP_TIMEOUT = 30.0  # seconds, to connect and for each reply
DEFAULT_PORTS = {"smtp": 25, "smtps": 465}


class MailError(Exception):
    """Sending failed; the message is one line naming the server and what went wrong."""


# ----------------------------------------------------------------------------- the mail


@dataclass(frozen=True)
class Voicemail:
    recording_sid: str
    caller: str  # the call's From, as Twilio sent it (E.164, or e.g. "anonymous")
    number: str  # the team number that was called, E.164
    duration: int  # seconds
    received_at: datetime  # timezone-aware
    transcript: str | None = None


def format_number(number: str) -> str:
    """International display form (+44 1595 000001); anything that is not a number comes back as it was."""
    try:
        parsed = phonenumbers.parse(number, None)
    except phonenumbers.NumberParseException:
        return number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.INTERNATIONAL)


def caller_name(caller: str, alias_for: Callable[[str], str | None]) -> str:
    """The preset alias of the caller's number, else the formatted number; a withheld number says so."""
    if not caller.startswith("+"):
        return "a withheld number"
    return alias_for(caller) or format_number(caller)


def length_text(seconds: int) -> str:
    minutes, secs = divmod(max(0, int(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02}:{secs:02}" if hours else f"{minutes}:{secs:02}"


def iso_utc(moment: datetime) -> str:
    """ISO 8601 in UTC, as /calls writes it: 2026-11-22T16:03:27Z."""
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def message_id(recording_sid: str, address: str, sender: str) -> str:
    """The same for every copy of one recording's mail to one address (a resent copy is a duplicate)."""
    domain = parseaddr(sender)[1].rpartition("@")[2] or "shetphone.invalid"
    digest = hashlib.sha256(address.strip().lower().encode()).hexdigest()[:16]
    return f"<voicemail.{recording_sid}.{digest}@{domain}>"


def no_alias(number: str) -> str | None:
    return None


def compose(
    voicemail: Voicemail,
    *,
    sender: str,
    recipient: str,
    audio: bytes | None,
    page_url: str,
    alias_for: Callable[[str], str | None] = no_alias,
    local_zone: tzinfo | None = None,
) -> EmailMessage:
    """The voicemail's e-mail: plain text and HTML, the recording attached as voicemail-SID.mp3.

    ``audio`` None means the recording could not be fetched: the mail says so
    and points to the page. ``local_zone`` None is the server's own zone.
    """
    name = caller_name(voicemail.caller, alias_for)
    number = format_number(voicemail.number)
    length = length_text(voicemail.duration)
    when_iso = iso_utc(voicemail.received_at)
    when_local = voicemail.received_at.astimezone(local_zone).strftime("%A %d %B %Y, %H:%M:%S %Z").strip()
    formatted_caller = format_number(voicemail.caller)
    # An alias names the number too; a number or "a withheld number" says all there is.
    who = f"{name} ({formatted_caller})" if voicemail.caller.startswith("+") and name != formatted_caller else name
    headline = f"{who} left a voicemail on {number}."
    headline = headline[0].upper() + headline[1:]

    message = EmailMessage()
    message["Subject"] = f"Voicemail from {name} on {number} ({length})"
    message["From"] = sender
    message["To"] = recipient
    message["Date"] = format_datetime(voicemail.received_at.astimezone(UTC))
    message["Message-ID"] = message_id(voicemail.recording_sid, recipient, sender)
    message["Auto-Submitted"] = "auto-generated"  # RFC 3834: no vacation replies to a robot

    attached = (
        "The recording is attached."
        if audio is not None
        else "The recording could not be attached; listen to it on the page."
    )
    text = [
        headline,
        "",
        f"When:   {when_iso}",
        f"        {when_local} (server time)",
        f"Length: {length}",
        "",
    ]
    if voicemail.transcript:
        text += ["Transcript:", *(f"  {line}" for line in voicemail.transcript.splitlines()), ""]
    text += [f"{attached} Listen and call back on the page:", page_url, ""]
    message.set_content("\n".join(text))

    e = html.escape
    transcript_html = (
        f"<p>Transcript:</p><blockquote>{e(voicemail.transcript)}</blockquote>" if voicemail.transcript else ""
    )
    message.add_alternative(
        f"""<!doctype html>
<html><body>
<p>{e(headline)}</p>
<table>
<tr><th align="left">When</th><td><time datetime="{e(when_iso)}">{e(when_iso)}</time><br>
{e(when_local)} (server time)</td></tr>
<tr><th align="left">Length</th><td>{e(length)}</td></tr>
</table>
{transcript_html}
<p>{e(attached)} <a href="{e(page_url, quote=True)}">Listen and call back on the page</a>.</p>
</body></html>
""",
        subtype="html",
    )
    if audio is not None:
        message.add_attachment(audio, maintype="audio", subtype="mpeg",
                               filename=f"voicemail-{voicemail.recording_sid}.mp3")
    return message


# ----------------------------------------------------------------------------- SMTP


@dataclass(frozen=True)
class SmtpConfig:
    """``smtp_url``: smtp://user:pass@host:587 (STARTTLS when offered) or smtps://user:pass@host:465 (TLS)."""

    host: str
    port: int
    implicit_tls: bool
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = SMTP_TIMEOUT

    @classmethod
    def from_url(cls, url: str, timeout: float = SMTP_TIMEOUT) -> SmtpConfig:
        """Parse ``smtp_url``; ValueError with one line saying what is wrong (never echoing the password)."""
        parts = urlsplit(url.strip())
        if parts.scheme not in DEFAULT_PORTS:
            raise ValueError(f"must start with smtp:// or smtps://, not {parts.scheme or 'nothing'}")
        if not parts.hostname:
            raise ValueError("names no host (smtp://user:pass@host:587)")
        try:
            port = parts.port or DEFAULT_PORTS[parts.scheme]
        except ValueError:
            raise ValueError("has a port that is not a number from 1 to 65535") from None
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError("has a path or query; the form is smtp://user:pass@host:port")
        username = unquote(parts.username) if parts.username else None
        password = unquote(parts.password) if parts.password is not None else None
        if (username is None) != (password is None):
            raise ValueError("has a user name without a password (or a password without a user name)")
        return cls(parts.hostname, port, parts.scheme == "smtps", username, password, timeout)

    def describe(self) -> str:
        """The URL without its password, for logs and check-config."""
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{'smtps' if self.implicit_tls else 'smtp'}://{user}{host}:{self.port}"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _reason(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        return "; ".join(f"{rcpt} refused: {code} {msg.decode(errors='replace')}"
                         for rcpt, (code, msg) in exc.recipients.items())
    if isinstance(exc, smtplib.SMTPResponseException):
        error = exc.smtp_error.decode(errors="replace") if isinstance(exc.smtp_error, bytes) else str(exc.smtp_error)
        return f"{exc.smtp_code} {' '.join(error.split())}"
    if isinstance(exc, UnicodeError):
        return "the user name or password is not ASCII, which smtplib cannot send"
    return str(exc) or type(exc).__name__


def _quit(smtp: smtplib.SMTP) -> None:
    """QUIT, ignoring how it goes: once the message is accepted, a bad goodbye must not make it a retry
    (and a second copy)."""
    try:
        smtp.quit()
    except (smtplib.SMTPException, OSError):
        pass
    finally:
        smtp.close()


class SmtpSender:
    """Sends one message per connection: TLS first (implicit, or STARTTLS whenever the server offers it),
    then AUTH when the URL has a user. A password is never sent in the clear to a host other than loopback.

    ``ssl_context`` verifies the server's certificate (the system's CAs by default).
    """

    def __init__(self, config: SmtpConfig, *, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None):
        self.config = config
        self._context = ssl_context or ssl.create_default_context()
        self._local_hostname = local_hostname

    def _open(self) -> tuple[smtplib.SMTP, list[str]]:
        config = self.config
        notes: list[str] = []
        if config.implicit_tls:
            smtp: smtplib.SMTP = smtplib.SMTP_SSL(config.host, config.port, timeout=config.timeout,
                                                  context=self._context, local_hostname=self._local_hostname)
            notes.append("TLS")
        else:
            smtp = smtplib.SMTP(config.host, config.port, timeout=config.timeout, local_hostname=self._local_hostname)
        try:
            smtp.ehlo_or_helo_if_needed()
            secure = config.implicit_tls
            if not secure and smtp.has_extn("starttls"):
                smtp.starttls(context=self._context)
                smtp.ehlo()
                secure = True
                notes.append("STARTTLS")
            if config.username is not None:
                if not secure and not is_loopback(config.host):
                    raise MailError(f"{config.describe()} offers no STARTTLS: the password is not sent in the clear")
                smtp.login(config.username, config.password or "")
                notes.append(f"authenticated as {config.username}")
        except BaseException:
            smtp.close()
            raise
        return smtp, notes

    def _session(self, work: Callable[[smtplib.SMTP], None]) -> list[str]:
        try:
            smtp, notes = self._open()
            try:
                work(smtp)
            finally:
                _quit(smtp)
        except MailError:
            raise
        except (smtplib.SMTPException, OSError, UnicodeError) as exc:
            raise MailError(f"{self.config.describe()}: {_reason(exc)}") from exc
        return notes

    def send(self, message: EmailMessage) -> None:
        """Hand ``message`` to the server, or raise :class:`MailError`."""
        self._session(lambda smtp: smtp.send_message(message))

    def hello(self) -> str:
        """Connect, say hello, TLS, log in, NOOP, QUIT: what ``check-config --smtp`` reports."""

        def noop(smtp: smtplib.SMTP) -> None:
            code, reply = smtp.noop()
            if code != 250:
                raise smtplib.SMTPResponseException(code, reply)

        notes = self._session(noop)
        return f"{self.config.describe()} said hello" + "".join(f"; {note}" for note in notes)


# ----------------------------------------------------------------------------- retries


@dataclass(frozen=True)
class RetrySchedule:
    """Back-off after failures: 30 s, 1, 2, 4, 8 min, then every 10 min, the last try at the hour."""

    first_delay: float = 30.0
    factor: float = 2.0
    max_delay: float = 600.0
    give_up_after: float = 3600.0

    def delay(self, failures: int) -> float:
        """Seconds to wait after the ``failures``-th failure (1 for the first)."""
        return min(self.max_delay, self.first_delay * self.factor ** max(0, failures - 1))

    def next_try(self, created_at: float, failures: int, now: float) -> float | None:
        """When to try again after ``failures`` failures, or None: the hour since ``created_at`` is over."""
        deadline = created_at + self.give_up_after
        if now >= deadline:
            return None
        return min(now + self.delay(failures), deadline)


# ----------------------------------------------------------------------------- the outbox


@dataclass(frozen=True)
class OutboxItem:
    id: int
    address: str
    voicemail: Voicemail  # as it is when claimed: with its transcript if one came
    failures: int  # failed attempts so far
    created_at: float  # unix time the row was added: the hour of retries counts from here
    # The claim's own mark: its lease's end. Another claim of the row is made only once this lease is over
    # (or this claim let the row go), so its lease ends later: (id, lease_until) names this claim alone.
    lease_until: float


class Outbox(Protocol):
    """What the sender loop needs of the store. Times are unix seconds."""

    def claim(self, now: float, lease: float) -> OutboxItem | None:
        """In one transaction: the row due first (due by ``now``, neither sent nor given up, its lease over),
        leased to the caller until ``now + lease``; None when nothing is due."""
        ...

    def sent(self, item_id: int) -> None:
        """Delivered: never claimed again."""
        ...

    def retry(self, item_id: int, due_at: float, error: str) -> None:
        """Failed: one more failure, the error kept, the lease released, due again at ``due_at``."""
        ...

    def give_up(self, item_id: int, error: str) -> None:
        """Failed for the last time: never claimed again; the error kept. The voicemail itself stays."""
        ...

    def release(self, item: OutboxItem) -> bool:
        """Not tried (the sender is stopping): the lease ends now, so the row is due again at once, at its
        place in the queue, with no failure counted. Only while ``item``'s claim still holds the row (queued,
        the same lease): a row sent, retried, given up or claimed again since is left as it is. True when
        released."""
        ...


class OutboxWriter(Protocol):
    """What the webhooks need of the store."""

    def add(self, voicemail: Voicemail, addresses: Iterable[str], *, now: float,
            wait_for_transcript: bool = False) -> int:
        """One row per address, due at ``now`` (``now + TRANSCRIPT_WAIT`` when waiting for a transcript),
        except for a (recording, address) already in the outbox, whatever its state: at most once even when
        Twilio repeats the callback. Returns how many rows were added."""
        ...

    def add_transcript(self, recording_sid: str, text: str | None, *, now: float) -> None:
        """The transcript came (None: Twilio said it failed): stored with the recording, and its rows still
        waiting become due at ``now``. Claims from then on carry the transcript."""
        ...


@dataclass
class _Row:
    id: int
    recording_sid: str
    address: str
    created_at: float
    due_at: float
    failures: int = 0
    lease_until: float = float("-inf")
    status: str = "queued"  # queued, sent, given up
    error: str | None = None


class InMemoryOutbox:
    """:class:`Outbox` and :class:`OutboxWriter` in one process (a lock stands for the transaction)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows: dict[int, _Row] = {}
        self._voicemails: dict[str, Voicemail] = {}

    def add(self, voicemail: Voicemail, addresses: Iterable[str], *, now: float,
            wait_for_transcript: bool = False) -> int:
        due = now + TRANSCRIPT_WAIT if wait_for_transcript and voicemail.transcript is None else now
        added = 0
        with self._lock:
            self._voicemails.setdefault(voicemail.recording_sid, voicemail)
            known = {(r.recording_sid, r.address.lower()) for r in self._rows.values()}
            for address in dict.fromkeys(addresses):
                if (voicemail.recording_sid, address.lower()) in known:
                    continue
                known.add((voicemail.recording_sid, address.lower()))
                row_id = len(self._rows) + 1
                self._rows[row_id] = _Row(row_id, voicemail.recording_sid, address, now, due)
                added += 1
        return added

    def add_transcript(self, recording_sid: str, text: str | None, *, now: float) -> None:
        with self._lock:
            if recording_sid in self._voicemails and text:
                self._voicemails[recording_sid] = replace(self._voicemails[recording_sid], transcript=text)
            for row in self._rows.values():
                if row.recording_sid == recording_sid and row.status == "queued" and row.failures == 0:
                    row.due_at = min(row.due_at, now)

    def claim(self, now: float, lease: float = LEASE_SECONDS) -> OutboxItem | None:
        with self._lock:
            due = [r for r in self._rows.values() if r.status == "queued" and r.due_at <= now and r.lease_until <= now]
            if not due:
                return None
            row = min(due, key=lambda r: (r.due_at, r.id))
            row.lease_until = now + lease
            return OutboxItem(row.id, row.address, self._voicemails[row.recording_sid], row.failures,
                              row.created_at, row.lease_until)

    def sent(self, item_id: int) -> None:
        with self._lock:
            self._rows[item_id].status = "sent"

    def retry(self, item_id: int, due_at: float, error: str) -> None:
        with self._lock:
            row = self._rows[item_id]
            row.failures += 1
            row.due_at = due_at
            row.error = error
            row.lease_until = float("-inf")

    def give_up(self, item_id: int, error: str) -> None:
        with self._lock:
            row = self._rows[item_id]
            row.failures += 1
            row.status = "given up"
            row.error = error

    def release(self, item: OutboxItem) -> bool:
        with self._lock:
            row = self._rows[item.id]
            if row.status != "queued" or row.lease_until != item.lease_until:
                return False
            row.lease_until = float("-inf")
            return True

    def status(self, recording_sid: str, address: str) -> tuple[str, int, str | None]:
        """(status, failures, last error) of one row: for tests and diagnostics."""
        with self._lock:
            for row in self._rows.values():
                if row.recording_sid == recording_sid and row.address == address:
                    return row.status, row.failures, row.error
        raise KeyError((recording_sid, address))


# ----------------------------------------------------------------------------- the sender loop


class MailSender:
    """Delivers the outbox's due rows, off the request path: :meth:`run_forever` in a background task
    (one per process; the outbox's claims keep processes from sending a row twice).

    ``send`` hands a message to SMTP (:meth:`SmtpSender.send`); ``fetch_audio``
    returns a recording's MP3 bytes. Either raising is a failure, retried on
    ``schedule``; when the hour is over a failed fetch still sends the mail,
    without the recording, and a failed send gives up. Each failure is logged;
    the voicemail itself is never touched.

    :meth:`stop` gives back a row claimed and not yet handed to SMTP, so a
    restart does not hold its mail for the rest of the lease.
    """

    def __init__(
        self,
        outbox: Outbox,
        send: Callable[[EmailMessage], None],
        fetch_audio: Callable[[str], bytes],
        *,
        mail_from: str,
        page_url: str,
        alias_for: Callable[[str], str | None] = no_alias,
        schedule: RetrySchedule = RetrySchedule(),
        lease: float = LEASE_SECONDS,
        clock: Callable[[], float] = time.time,
        local_zone: tzinfo | None = None,
        idle_seconds: float = 5.0,
        batch: int = 100,
    ):
        self.outbox = outbox
        self._send = send
        self._fetch_audio = fetch_audio
        self._mail_from = mail_from
        self._page_url = page_url
        self._alias_for = alias_for
        self.schedule = schedule
        self._lease = lease
        self._clock = clock
        self._local_zone = local_zone
        self._idle = idle_seconds
        self._batch = batch
        self._wake = threading.Event()
        # Where the loop is with its row, for stop(); all under _state.
        self._state = threading.Condition()
        self._stopped = False
        self._claiming = False  # a claim in flight: the loop itself gives its row back if stop() came meanwhile
        self._held: OutboxItem | None = None  # claimed, not yet handed to SMTP: stop() gives it back
        self._finishing = False  # handed to SMTP (or its failure being written): stop() waits for the outcome

    def deliver(self, item: OutboxItem) -> str:
        """Try one row :meth:`run_once` claimed: "sent", "retry", "given up", or "released" when the sender
        stopped first (given back untried, no failure counted)."""
        voicemail = item.voicemail
        where = f"voicemail {voicemail.recording_sid} to {item.address}"
        audio: bytes | None = None
        fetch_error: str | None = None
        try:
            audio = self._fetch_audio(voicemail.recording_sid)
        except Exception as exc:  # any failure of the fetch: the mail must not die with it
            fetch_error = f"fetching the recording: {exc}"
        with self._state:
            if self._held is not item:  # stop() gave the row back during the fetch: not ours to write now
                return "released"
            self._held = None
            self._finishing = True
        try:
            return self._finish(item, audio, fetch_error, where)
        finally:
            with self._state:
                self._finishing = False
                self._state.notify_all()

    def _finish(self, item: OutboxItem, audio: bytes | None, fetch_error: str | None, where: str) -> str:
        # A failed fetch is retried; once the hour is over the mail goes without the recording rather than not at all.
        if fetch_error is not None and self._reschedule(item, fetch_error, where):
            return "retry"
        try:
            message = compose(item.voicemail, sender=self._mail_from, recipient=item.address, audio=audio,
                              page_url=self._page_url, alias_for=self._alias_for, local_zone=self._local_zone)
            self._send(message)
        except Exception as exc:  # MailError, or a bug: logged and retried, never a dead loop
            if isinstance(exc, MailError):
                error = str(exc)
            else:
                log.exception("mail: composing or sending %s failed unexpectedly", where)
                error = f"{type(exc).__name__}: {exc}"
            if self._reschedule(item, error, where):
                return "retry"
            self.outbox.give_up(item.id, error)
            log.error("mail: gave up on %s after an hour of retries: %s", where, error)
            return "given up"
        self.outbox.sent(item.id)
        log.info("mail: sent %s%s", where, "" if audio is not None else " without the recording")
        return "sent"

    def _reschedule(self, item: OutboxItem, error: str, where: str) -> bool:
        now = self._clock()
        due = self.schedule.next_try(item.created_at, item.failures + 1, now)
        if due is None:
            return False
        self.outbox.retry(item.id, due, error)
        log.warning("mail: %s failed (attempt %d), trying again in %.0f s: %s", where, item.failures + 1,
                    due - now, error)
        return True

    def _claim(self) -> OutboxItem | None:
        """The row due first, held by this sender; None when nothing is due or the sender is stopping."""
        with self._state:
            if self._stopped:
                return None
            self._claiming = True
        try:
            item = self.outbox.claim(self._clock(), self._lease)
            with self._state:
                if not self._stopped:
                    self._held = item
                    return item
            if item is not None:  # stop() came during the claim and waits for this
                self._give_back(item)
            return None
        finally:
            with self._state:
                self._claiming = False
                self._state.notify_all()

    def _give_back(self, item: OutboxItem) -> None:
        where = f"voicemail {item.voicemail.recording_sid} to {item.address}"
        try:
            released = self.outbox.release(item)
        except Exception as exc:  # the store down, say: the lease still runs out, as before there was a release
            log.warning("mail: stopping, %s could not be given back; it goes when its lease runs out: %s",
                        where, exc)
            return
        if released:
            log.info("mail: stopping, %s was given back unsent: due again at once", where)

    def run_once(self) -> int:
        """Deliver what is due now (at most ``batch`` rows); how many rows were tried."""
        tried = 0
        while tried < self._batch:
            item = self._claim()
            if item is None:
                break
            self.deliver(item)
            tried += 1
        return tried

    def run_forever(self) -> None:
        """Until :meth:`stop`: deliver, then wait ``idle_seconds`` or until :meth:`wake`."""
        while not self._stopped:
            try:
                self.run_once()
            except Exception:  # the store down, say: the loop waits and tries again
                log.exception("mail: the outbox failed; trying again shortly")
            self._wake.wait(self._idle)
            self._wake.clear()

    def wake(self) -> None:
        """A row was added: look now rather than at the next idle tick."""
        self._wake.set()

    def stop(self, wait: float = SMTP_TIMEOUT) -> None:
        """Take no more rows, and give back the one claimed and not yet handed to SMTP (it is due again at
        once: another process, or this one restarted, sends it now rather than when the lease runs out).

        A mail already handed to SMTP is let finish, for up to ``wait`` seconds, and its outcome written
        (sent, or a retry). It is not abandoned and given back: the server may already hold the message
        (after DATA, before its 250 reached us), and a row given back then would be sent twice. A send that
        outlasts ``wait`` keeps its lease, as a process that died would. Never raises.
        """
        with self._state:
            self._stopped = True
            held, self._held = self._held, None
        self._wake.set()
        if held is not None:
            self._give_back(held)
        with self._state:
            self._state.wait_for(lambda: not self._claiming and not self._finishing, timeout=wait)
            if self._finishing:
                log.warning("mail: stopped with a mail still being sent after %.0f s; its row keeps its lease",
                            wait)
