"""Phone numbers, in one place: parse, validate, the region of, the type of, and the display form.

Plain Python on ``phonenumbers`` (Google's libphonenumber metadata). Everything
else in the package speaks E.164 strings and asks here; nothing else imports
``phonenumbers``.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

import phonenumbers
from phonenumbers import PhoneNumberFormat, PhoneNumberType

# The "region" of +800, +808, +870, +881, +882, +883, ...: numbers of no country.
NON_GEOGRAPHIC = phonenumbers.REGION_CODE_FOR_NON_GEO_ENTITY


class NumberType(StrEnum):
    """What kind of line a number is, as libphonenumber's metadata says."""

    FIXED_LINE = "fixed line"
    MOBILE = "mobile"
    FIXED_LINE_OR_MOBILE = "fixed line or mobile"  # where the plan does not tell them apart (US, CA)
    TOLL_FREE = "toll free"
    PREMIUM_RATE = "premium rate"
    SHARED_COST = "shared cost"
    VOIP = "VoIP"
    PERSONAL_NUMBER = "personal number"  # UK 070: forwarded anywhere, charged like premium rate
    PAGER = "pager"
    UAN = "UAN"  # universal access numbers (UK 055, 03 non-geographic)
    VOICEMAIL = "voicemail access"
    UNKNOWN = "unknown"


_TYPES = {
    PhoneNumberType.FIXED_LINE: NumberType.FIXED_LINE,
    PhoneNumberType.MOBILE: NumberType.MOBILE,
    PhoneNumberType.FIXED_LINE_OR_MOBILE: NumberType.FIXED_LINE_OR_MOBILE,
    PhoneNumberType.TOLL_FREE: NumberType.TOLL_FREE,
    PhoneNumberType.PREMIUM_RATE: NumberType.PREMIUM_RATE,
    PhoneNumberType.SHARED_COST: NumberType.SHARED_COST,
    PhoneNumberType.VOIP: NumberType.VOIP,
    PhoneNumberType.PERSONAL_NUMBER: NumberType.PERSONAL_NUMBER,
    PhoneNumberType.PAGER: NumberType.PAGER,
    PhoneNumberType.UAN: NumberType.UAN,
    PhoneNumberType.VOICEMAIL: NumberType.VOICEMAIL,
}


class InvalidNumber(ValueError):
    """Not a valid phone number; ``str()`` says why, in words for a person."""


@dataclass(frozen=True)
class Number:
    """A valid phone number: its E.164 form, region ("001" when non-geographic) and type."""

    e164: str
    region: str
    type: NumberType

    @property
    def non_geographic(self) -> bool:
        return self.region == NON_GEOGRAPHIC


def _valid(text: str, default_region: str | None) -> phonenumbers.PhoneNumber | None:
    try:
        parsed = phonenumbers.parse(text, default_region)
    except phonenumbers.NumberParseException:
        return None
    return parsed if phonenumbers.is_valid_number(parsed) else None


def _number(parsed: phonenumbers.PhoneNumber) -> Number:
    return Number(
        e164=phonenumbers.format_number(parsed, PhoneNumberFormat.E164),
        region=phonenumbers.region_code_for_number(parsed),
        type=_TYPES.get(phonenumbers.number_type(parsed), NumberType.UNKNOWN),
    )


def parse_e164(text: str) -> str:
    """A number written in E.164 (configuration): returned as is, or :class:`InvalidNumber` saying why."""
    parsed = _valid(text, None) if text.startswith("+") else None
    if parsed is None:
        raise InvalidNumber(f"{text!r} is not a valid phone number in E.164 form (like +441595000001)")
    e164 = phonenumbers.format_number(parsed, PhoneNumberFormat.E164)
    if e164 != text:
        raise InvalidNumber(f"{text!r} is not in E.164 form; write {e164}")
    return e164


def parse_dialled(text: str, default_region: str | None) -> Number:
    """What a person dialled, in any format; a number without ``+`` is read in ``default_region``.

    ``00`` and ``011`` style international prefixes work: they are read in the default region.
    """
    text = (text or "").strip()
    parsed = _valid(text, None if text.startswith("+") else default_region) if text else None
    if parsed is None:
        raise InvalidNumber(f"{text!r} is not a valid phone number")
    return _number(parsed)


def parse_in_country(country_code: str, national: str) -> str:
    """A national number with its country calling code (``44``, ``1595 123456``) in E.164."""
    parsed = _valid(f"+{country_code}{national}", None) if country_code.isdigit() else None
    if parsed is None:
        raise InvalidNumber(f"{national!r} is not a valid number for country code {country_code}")
    return phonenumbers.format_number(parsed, PhoneNumberFormat.E164)


def region_of(e164: str) -> str | None:
    """The ISO 3166 region of an E.164 number, ``"001"`` for non-geographic, None when unknown."""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return None


def display(e164: str) -> str:
    """The form people read: international format, e.g. ``+44 1595 123456``; anything else as given."""
    try:
        parsed = phonenumbers.parse(e164, None)
    except phonenumbers.NumberParseException:
        return e164
    return phonenumbers.format_number(parsed, PhoneNumberFormat.INTERNATIONAL)


def is_region(code: str) -> bool:
    """An ISO 3166 region code phonenumbers knows, or ``"001"`` (the non-geographic numbers)."""
    return code in phonenumbers.SUPPORTED_REGIONS or code == NON_GEOGRAPHIC
