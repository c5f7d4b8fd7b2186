"""Who an incoming call rings (SPEC §7), and the caller ID its phone legs show.

Pure: the group of a Twilio number, the members' states, the forward numbers
and the current users in; the browsers and phones to ring out, or voicemail.
"""

from __future__ import annotations

from collections.abc import Callable, Container, Mapping
from dataclasses import dataclass

import phonenumbers

from . import twiml
from .presence import State


@dataclass(frozen=True)
class RingGroup:
    """The line of one number in ``[shetphone:numbers]``: user names and outside phones (E.164)."""

    clients: tuple[str, ...]
    outside_numbers: tuple[str, ...] = ()


@dataclass(frozen=True)
class RingPlan:
    clients: tuple[str, ...]  # browser clients to ring: <Client>
    numbers: tuple[str, ...]  # phones to ring, E.164: <Number>

    @property
    def voicemail(self) -> bool:
        """Nobody to ring: the caller goes straight to voicemail, with no ringing first."""
        return not self.clients and not self.numbers


def plan_ringing(
    group: RingGroup,
    states: Mapping[str, State],
    forward: Mapping[str, str],
    current_users: Container[str],
) -> RingPlan:
    """The group's available clients, its outside phones, and the forward number of each offline member.

    A member who is dnd or busy is not rung anywhere; a member no longer in
    ``current_users`` (removed from .htpasswd) is not rung and not forwarded
    to; a member without a state counts as offline. A number is rung once
    even if it is both an outside phone and a forward number. The legs never
    outnumber the line's entries (a member rings either their browsers or
    their forward number), so the line's limit of 10 holds for the <Dial>.
    """
    clients: list[str] = []
    numbers: list[str] = list(dict.fromkeys(group.outside_numbers))
    for member in group.clients:
        if member not in current_users:
            continue
        state = states.get(member, State.OFFLINE)
        if state is State.AVAILABLE:
            clients.append(member)
        elif state is State.OFFLINE and forward.get(member) and forward[member] not in numbers:
            numbers.append(forward[member])
    return RingPlan(clients=tuple(clients), numbers=tuple(numbers))


def leg_caller_id(caller: str, team_number: str) -> str:
    """The caller ID of a forwarded or outside leg: the original caller's number where Twilio allows it,
    else the team number that was called.

    Twilio accepts as a <Dial> callerId the calling number, the called number
    or a verified number (error 13214); a withheld caller (``anonymous``,
    ``restricted``) or a malformed number from the carrier is not a number a
    phone network accepts, so those legs show the team number. See
    docs/presence-and-mail.md.
    """
    try:
        parsed = phonenumbers.parse(caller, None)
    except phonenumbers.NumberParseException:
        return team_number
    if not caller.startswith("+") or not phonenumbers.is_valid_number(parsed):
        return team_number
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


def ring_twiml(
    plan: RingPlan,
    *,
    caller: str,
    team_number: str,
    timeout: int,
    action_url: str,
    status_url: str,
    voicemail: Callable[[], str],
) -> str:
    """The TwiML answering an incoming call of ``plan``: ``voicemail()`` when nobody is rung, the plain
    ring group (Twilio's default caller ID) for browsers alone, else browsers and phones in one <Dial>."""
    if plan.voicemail:
        return voicemail()
    if not plan.numbers:
        return twiml.ring_group(plan.clients, timeout, action_url, status_url)
    return twiml.ring_legs(
        plan.clients, plan.numbers, leg_caller_id(caller, team_number), timeout, action_url, status_url
    )
