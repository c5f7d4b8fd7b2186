"""Who rings for a Twilio number, who may call from which number, and the rooms of a user.

Plain Python over the parsed settings: the one place that answers "does this
user belong to this number?", so Socket.IO rooms, the call log listing and the
webhooks all agree.
"""

from __future__ import annotations

from collections.abc import Mapping

from .settings import NumberTarget


class Directory:
    def __init__(self, numbers: Mapping[str, NumberTarget], clients: Mapping[str, tuple[str, ...]] | None):
        """``clients`` is ``[shetphone:clients]``; None when that section is missing."""
        self._numbers = dict(numbers)
        self._clients = dict(clients) if clients is not None else caller_ids_from_numbers(numbers)
        memberships: dict[str, set[str]] = {}
        for number, target in self._numbers.items():
            for client in target.clients:
                memberships.setdefault(client, set()).add(number)
        for client, caller_ids in self._clients.items():
            memberships.setdefault(client, set()).update(caller_ids)
        self._memberships = {client: frozenset(numbers) for client, numbers in memberships.items()}
        members: dict[str, set[str]] = {}
        for client, numbers in memberships.items():
            for number in numbers:
                members.setdefault(number, set()).add(client)
        self._members = {number: frozenset(clients) for number, clients in members.items()}

    def target_for(self, number: str) -> NumberTarget | None:
        """Where an incoming call to ``number`` goes, or None when it is not ours."""
        return self._numbers.get(number)

    def clients_for(self, number: str) -> tuple[str, ...]:
        """The browser clients an incoming call to ``number`` rings."""
        target = self._numbers.get(number)
        return target.clients if target else ()

    def caller_ids_for(self, client: str) -> tuple[str, ...]:
        """The caller IDs ``client`` may use, in the configured order (the first is the default)."""
        return self._clients.get(client, ())

    def numbers_of(self, user: str) -> frozenset[str]:
        """The Twilio numbers ``user`` rings on or may call from."""
        return self._memberships.get(user, frozenset())

    def members_of(self, number: str) -> frozenset[str]:
        """The users of ``number``: those it rings, and those who may call from it."""
        return self._members.get(number, frozenset())

    def teammates_of(self, user: str) -> frozenset[str]:
        """The users who share a number with ``user`` (SPEC §7), ``user`` included."""
        return frozenset({user}).union(*(self.members_of(number) for number in self.numbers_of(user)))

    def users(self) -> frozenset[str]:
        """Every user the configuration names."""
        return frozenset(self._memberships)

    def team_numbers(self) -> frozenset[str]:
        """Every number of the team: those that ring, and every caller ID."""
        team = self.__dict__.get("_team_numbers")
        if team is None:  # asked on every status callback: worked out once
            team = self.__dict__["_team_numbers"] = frozenset(self._numbers).union(*self._clients.values())
        return team

    def rooms_for(self, user: str) -> list[str]:
        """The Socket.IO rooms of ``user``: their own, and one per number they belong to."""
        return [f"user:{user}"] + [number_room(n) for n in sorted(self.numbers_of(user))]


def caller_ids_from_numbers(numbers: Mapping[str, NumberTarget]) -> dict[str, tuple[str, ...]]:
    """Without ``[shetphone:clients]`` (the original behaviour), a client may call from the numbers that ring it."""
    inverted: dict[str, list[str]] = {}
    for number, target in numbers.items():
        for client in target.clients:
            inverted.setdefault(client, []).append(number)
    return {name: tuple(ids) for name, ids in inverted.items()}


def number_room(number: str) -> str:
    return f"number:{number}"
