"""The outgoing-call policy: which countries and kinds of number may be dialled, and the caller ID.

Plain Python on :mod:`phone_numbers`; the reasons in :class:`DialRefused` are spoken
to the caller by ``<Say>``, so they are short sentences.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from . import phone_numbers
from .phone_numbers import NON_GEOGRAPHIC, NumberType
from .settings import ANY_COUNTRY

# Toll fraud: only these are dialled unless allow_premium = yes. The others cost more than a
# call (premium rate, shared cost, UAN), or go anywhere at a high rate (personal numbers, VoIP,
# pagers, voicemail access); an unknown type is refused with them.
ORDINARY_TYPES = frozenset(
    {NumberType.FIXED_LINE, NumberType.MOBILE, NumberType.FIXED_LINE_OR_MOBILE, NumberType.TOLL_FREE}
)
SPOKEN_TYPES = {
    NumberType.PREMIUM_RATE: "premium rate numbers",
    NumberType.SHARED_COST: "shared cost numbers",
    NumberType.PERSONAL_NUMBER: "personal numbers",
    NumberType.UAN: "special rate numbers",
    NumberType.VOIP: "internet phone numbers",
    NumberType.PAGER: "pagers",
    NumberType.VOICEMAIL: "voicemail access numbers",
}
NON_GEOGRAPHIC_REFUSAL = "Sorry, calls to satellite phones and other international services are not allowed."


class DialRefused(Exception):
    """The call must not be placed; ``reason`` is said to the caller."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class DialPolicy:
    allowed_countries: frozenset[str]  # ISO 3166 regions, "001" (non-geographic), or "*" (every geographic region)
    allow_premium: bool

    @classmethod
    def configured(
        cls, allowed_countries: frozenset[str] | None, allow_premium: bool, team_numbers: Iterable[str]
    ) -> DialPolicy:
        """The policy of the settings: without ``allowed_countries``, the regions of the team's own numbers."""
        if allowed_countries is None:
            allowed_countries = frozenset(phone_numbers.region_of(n) for n in team_numbers) - {None}
        return cls(allowed_countries=allowed_countries, allow_premium=allow_premium)

    @property
    def every_country(self) -> bool:
        return ANY_COUNTRY in self.allowed_countries

    def allows_region(self, region: str | None) -> bool:
        # "*" is every country; the non-geographic +8xx services (satellite, global
        # numbers) are nobody's country, so only naming 001 lets them through.
        if region == NON_GEOGRAPHIC:
            return NON_GEOGRAPHIC in self.allowed_countries
        return self.every_country or region in self.allowed_countries

    def allows_type(self, number: phone_numbers.Number) -> bool:
        # A non-geographic number's type says little (libphonenumber calls +881 satellite
        # phones "mobile"), so each one counts as a premium service.
        return self.allow_premium or (number.type in ORDINARY_TYPES and not number.non_geographic)


@dataclass(frozen=True)
class OutboundCall:
    destination: str  # E.164
    caller_id: str  # E.164, one of the client's own numbers


def choose_caller_id(destination_region: str | None, caller_ids: Iterable[str]) -> str:
    """The caller ID in the destination's country wins, else the first."""
    caller_ids = list(caller_ids)
    for caller_id in caller_ids:
        if destination_region and phone_numbers.region_of(caller_id) == destination_region:
            return caller_id
    return caller_ids[0]


def check_destination(dialled: str, default_region: str | None, policy: DialPolicy) -> phone_numbers.Number:
    """The number a person dialled, made E.164 and checked against the policy, or :class:`DialRefused`."""
    if not (dialled or "").strip():
        raise DialRefused("No number was dialled.")
    try:
        number = phone_numbers.parse_dialled(dialled, default_region)
    except phone_numbers.InvalidNumber:
        raise DialRefused("Sorry, that is not a valid phone number.") from None
    if not policy.allows_region(number.region):
        if number.non_geographic:
            raise DialRefused(NON_GEOGRAPHIC_REFUSAL)
        raise DialRefused("Sorry, calls to that country are not allowed.")
    if not policy.allows_type(number):
        if number.non_geographic:
            raise DialRefused(NON_GEOGRAPHIC_REFUSAL)
        kind = SPOKEN_TYPES.get(number.type, "numbers of that kind")
        raise DialRefused(f"Sorry, calls to {kind} are not allowed.")
    return number


def plan_outbound_call(
    dialled: str,
    caller_ids: tuple[str, ...],
    policy: DialPolicy,
    requested_caller_id: str | None = None,
) -> OutboundCall:
    """Decide the destination and caller ID of a browser's call, or raise :class:`DialRefused`."""
    if not caller_ids:
        raise DialRefused("Sorry, you have no number to call from.")
    number = check_destination(dialled, phone_numbers.region_of(caller_ids[0]), policy)
    if requested_caller_id:
        if requested_caller_id not in caller_ids:
            raise DialRefused("Sorry, you may not call from that number.")
        caller_id = requested_caller_id
    else:
        caller_id = choose_caller_id(number.region, caller_ids)
    return OutboundCall(destination=number.e164, caller_id=caller_id)
