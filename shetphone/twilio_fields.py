"""What the fields of Twilio's webhooks can be, checked before anything of a request is stored.

A correctly signed request may still carry a value no real Twilio request does: a
CallSid of another form, a ``From`` longer than any address, a NUL byte. SQLite
keeps such a value; PostgreSQL refuses it (a column's width, and no NUL in text),
and would refuse it again on every retry. So a route checks its fields first and
answers a request with such a value as done, with one line naming the field, and
stores nothing of it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from .voicemail import is_recording_sid

# Two letters and 32 hex digits: CA for a call and each of its legs.
CALL_SID = re.compile(r"[A-Z]{2}[0-9a-fA-F]{32}")
# From and To: an E.164 number is at most 16 characters, client:NAME at most 128 (settings.CLIENT_NAME);
# a SIP address can be longer, but none a call log column (255) cannot hold.
LONGEST_ADDRESS = 255
LONGEST_URL = 1024  # RecordingUrl: its column's width; Twilio's are about 130
SHOWN = 40  # characters of a refused value in the log line

Check = Callable[[str], str | None]  # what is wrong with a field's value, or None


def _shown(value: str) -> str:
    """The value for a log line: quoted and escaped (a NUL or a newline shows as such), and cut short."""
    return repr(value[:SHOWN]) + ("..." if len(value) > SHOWN else "")


def call_sid(value: str) -> str | None:
    if CALL_SID.fullmatch(value):
        return None
    return f"{_shown(value)} is not a CallSid (two letters and 32 hex digits)"


def recording_sid(value: str) -> str | None:
    if is_recording_sid(value):
        return None
    return f"{_shown(value)} is not a RecordingSid (RE and 32 hex digits)"


def _text_of_at_most(longest: int, what: str) -> Check:
    def check(value: str) -> str | None:
        if "\0" in value:
            return f"{_shown(value)} has a NUL byte"
        if len(value) > longest:
            return f"{_shown(value)} is {len(value)} characters long, longer than any {what} ({longest})"
        return None

    return check


address = _text_of_at_most(LONGEST_ADDRESS, "address")
url = _text_of_at_most(LONGEST_URL, "URL")


def problem(form: Mapping[str, str], checks: Mapping[str, Check]) -> str | None:
    """``"From '+44...' has a NUL byte"`` for the first field of ``form`` that no real Twilio request carries;
    None when every one could be real.

    Only fields present and not empty are checked: what a missing one means is the route's to say.
    """
    for field, check in checks.items():
        value = form.get(field)
        if value:
            wrong = check(value)
            if wrong is not None:
                return f"{field} {wrong}"
    return None


def without_nul(text: str) -> str:
    """Free text (a transcript) without its NUL bytes: nothing a person reads, and PostgreSQL refuses them."""
    return text.replace("\0", "")
