"""The outgoing-call policy: E.164 normalisation, allowed countries, premium rate, caller ID.

Plain Python on ``phonenumbers``; the reasons in :class:`DialRefused` are spoken to
the caller by ``<Say>``, so they are short sentences.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import phonenumbers
from phonenumbers import PhoneNumberType

PREMIUM_TYPES = {PhoneNumberType.PREMIUM_RATE, PhoneNumberType.SHARED_COST}


class DialRefused(Exception):
    """The call must not be placed; ``reason`` is said to the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DialPolicy:
    allowed_countries: frozenset[str] | None  # None: every region
    allow_premium: bool


@dataclass(frozen=True)
class OutboundCall:
    destination: str  # E.164
    caller_id: str  # E.164, one of the client's own numbers


def region_of(e164: str) -> str | None:
    return phonenumbers.region_code_for_number(phonenumbers.parse(e164))


def normalise(number: str, default_region: str | None) -> phonenumbers.PhoneNumber:
    """Parse what the person dialled; a number without ``+`` is read in ``default_region``.

    ``00`` and ``011`` style international prefixes work because phonenumbers reads
    them in the default region.
    """
    text = (number or "").strip()
    if not text:
        raise DialRefused("No number was dialled.")
    try:
        parsed = phonenumbers.parse(text, None if text.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        raise DialRefused("Sorry, that is not a valid phone number.") from None
    if not phonenumbers.is_valid_number(parsed):
        raise DialRefused("Sorry, that is not a valid phone number.")
    return parsed


def choose_caller_id(destination_region: str | None, caller_ids: Iterable[str]) -> str:
    """The caller ID in the destination's country wins, else the first."""
    caller_ids = list(caller_ids)
    for caller_id in caller_ids:
        if destination_region and region_of(caller_id) == destination_region:
            return caller_id
    return caller_ids[0]


def plan_outbound_call(
    dialled: str,
    caller_ids: tuple[str, ...],
    policy: DialPolicy,
    requested_caller_id: str | None = None,
) -> OutboundCall:
    """Decide the destination and caller ID of a browser's call, or raise :class:`DialRefused`."""
    if not caller_ids:
        raise DialRefused("Sorry, you have no number to call from.")
    parsed = normalise(dialled, region_of(caller_ids[0]))
    destination = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    region = phonenumbers.region_code_for_number(parsed)
    if policy.allowed_countries is not None and region not in policy.allowed_countries:
        raise DialRefused("Sorry, calls to that country are not allowed.")
    if not policy.allow_premium and phonenumbers.number_type(parsed) in PREMIUM_TYPES:
        raise DialRefused("Sorry, calls to premium rate numbers are not allowed.")
    if requested_caller_id:
        if requested_caller_id not in caller_ids:
            raise DialRefused("Sorry, you may not call from that number.")
        caller_id = requested_caller_id
    else:
        caller_id = choose_caller_id(region, caller_ids)
    return OutboundCall(destination=destination, caller_id=caller_id)
