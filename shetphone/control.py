"""Call control as a plan: hold, cold and warm transfer, three-way calls (SPEC §6).

Plain Python, no Flask, no SQL, no network. A call's control state
(:class:`CallControl`) and a request (or a callback from Twilio) go in; out come
either a :class:`Refusal` (the HTTP status and why) or a :class:`Plan`: the
ordered Twilio steps to perform and the state to store once they succeed.

The state keeps what is *wanted* (the outside party held or not, parties to ring,
parties to take off the call) beside what Twilio *has done* (who joined, who is
held). Every plan ends by reconciling the two with the steps Twilio allows at
that moment: a hold asked for before the conference exists is done when the
outside party joins it, a party to ring is rung once the conference's SID is
known, and so on. So requests and callbacks may arrive in any order, and a step
that failed is tried again on the next callback.

docs/call-control.md has the state machine and the Twilio behaviour each step
relies on.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import asdict, dataclass, replace
from typing import Literal

from . import twiml

Direction = Literal["inbound", "outbound"]
Kind = Literal["client", "number"]
Mode = Literal["cold", "warm"]
Phase = Literal["ringing", "bridged", "conference", "ended"]
# bridged: a leg of the plain <Dial> the call started with; connecting: on its way into the
# conference; pending: to be rung once the conference exists; ringing: rung into it.
Status = Literal["bridged", "connecting", "pending", "ringing", "joined", "left"]

CONFERENCE_PREFIX = "shetphone-"
OUTSIDE_LABEL = "outside"
ACTIVE = frozenset({"bridged", "connecting", "pending", "ringing", "joined"})
ON_THE_LINE = frozenset({"bridged", "connecting", "joined"})
TERMINAL_CALL_STATUSES = frozenset({"completed", "busy", "no-answer", "failed", "canceled"})
UNANSWERED_MESSAGE = "Sorry, nobody is available to take your call. Goodbye."


# ---------------------------------------------------------------------- inputs


@dataclass(frozen=True)
class Destination:
    """Whom to ring: a teammate's browsers (``client``, ``name`` a user) or a phone number (E.164).

    The route decides it (directory, dialing policy); control only uses it.
    """

    kind: Kind
    name: str

    @property
    def address(self) -> str:
        return f"client:{self.name}" if self.kind == "client" else self.name


@dataclass(frozen=True)
class HoldRequest:
    hold: bool


@dataclass(frozen=True)
class TransferRequest:
    to: Destination
    mode: Mode


@dataclass(frozen=True)
class CompleteRequest:
    pass


@dataclass(frozen=True)
class CancelRequest:
    pass


@dataclass(frozen=True)
class AddRequest:
    to: Destination


Request = HoldRequest | TransferRequest | CompleteRequest | CancelRequest | AddRequest


@dataclass(frozen=True)
class ControlConfig:
    """What plans need from the settings, with absolute URLs built from ``public_url``."""

    conference_status_url: str  # PUBLIC/voice/conference
    call_status_url: str  # PUBLIC/voice/status
    ring_timeout: int
    hold_url: str | None = None  # hold_music_url; None: Twilio's default music
    voicemail_twiml: str | None = None  # the number's voicemail; None when voicemail is off
    unanswered_message: str = UNANSWERED_MESSAGE


@dataclass(frozen=True)
class ConferenceEvent:
    """One conference status callback, as Twilio posts it to /voice/conference."""

    event: str  # StatusCallbackEvent: conference-start, participant-join, participant-hold, ...
    conference_sid: str
    friendly_name: str
    call_sid: str | None = None
    label: str | None = None
    hold: bool | None = None
    muted: bool | None = None
    sequence: int | None = None
    participant_call_status: str | None = None  # on participant-leave

    @classmethod
    def from_form(cls, form: Mapping[str, str]) -> ConferenceEvent:
        return cls(
            event=form.get("StatusCallbackEvent", ""),
            conference_sid=form.get("ConferenceSid", ""),
            friendly_name=form.get("FriendlyName", ""),
            call_sid=form.get("CallSid") or None,
            label=form.get("ParticipantLabel") or None,
            hold=_flag(form.get("Hold")),
            muted=_flag(form.get("Muted")),
            sequence=_int(form.get("SequenceNumber")),
            participant_call_status=form.get("ParticipantCallStatus") or None,
        )

    @property
    def root_sid(self) -> str | None:
        return root_sid_of(self.friendly_name)


# ----------------------------------------------------------------------- state


@dataclass(frozen=True)
class Party:
    """One leg of the call: the outside party, a teammate's browser, or a number rung into it."""

    call_sid: str | None  # None until Twilio has created the call (a party still pending)
    label: str
    kind: Kind
    name: str  # user name or E.164
    status: Status
    outside: bool = False
    held: bool = False  # as Twilio last did or said
    muted: bool = False
    leaving: bool = False  # wanted off the call; taken off as soon as Twilio allows
    sequence: int = -1  # the last conference SequenceNumber applied to this party

    @property
    def active(self) -> bool:
        return self.status in ACTIVE and not self.leaving


@dataclass(frozen=True)
class TransferUnderWay:
    to: Destination
    mode: Mode
    label: str  # the target's party
    by: str  # the user who asked for it


@dataclass(frozen=True)
class CallControl:
    """A call's control state, keyed by its root CallSid (the request Twilio first sent to /voice)."""

    root_sid: str
    number: str  # the call's team number: rung targets are called from it
    direction: Direction
    phase: Phase
    parties: tuple[Party, ...]
    conference_sid: str | None = None
    hold_wanted: bool = False  # the outside party should be on hold
    transfer: TransferUnderWay | None = None

    @property
    def conference_name(self) -> str:
        return conference_name_for(self.root_sid)

    @property
    def outside(self) -> Party:
        return next(p for p in self.parties if p.outside)

    def party(self, *, call_sid: str | None = None, label: str | None = None) -> Party | None:
        for candidate in self.parties:
            if (call_sid and candidate.call_sid == call_sid) or (label and candidate.label == label):
                return candidate
        return None

    def user_on_call(self, user: str) -> bool:
        """A user whose browser leg is in progress on the call (SPEC §6: who may control it)."""
        return any(p.kind == "client" and not p.outside and p.name == user and p.status in ON_THE_LINE
                   and not p.leaving for p in self.parties)

    def to_dict(self) -> dict:
        """Plain JSON-able data, for the store."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping) -> CallControl:
        transfer = data.get("transfer")
        return cls(
            root_sid=data["root_sid"], number=data["number"], direction=data["direction"], phase=data["phase"],
            parties=tuple(Party(**party) for party in data["parties"]),
            conference_sid=data.get("conference_sid"), hold_wanted=bool(data.get("hold_wanted")),
            transfer=TransferUnderWay(to=Destination(**transfer["to"]), mode=transfer["mode"],
                                      label=transfer["label"], by=transfer["by"]) if transfer else None,
        )


def conference_name_for(root_sid: str) -> str:
    return CONFERENCE_PREFIX + root_sid


def root_sid_of(conference_name: str) -> str | None:
    """The root CallSid of one of our conferences, or None for a name that is not ours."""
    if conference_name.startswith(CONFERENCE_PREFIX) and len(conference_name) > len(CONFERENCE_PREFIX):
        return conference_name[len(CONFERENCE_PREFIX):]
    return None


def call_state(root_sid: str, number: str, direction: Direction, user: str, outside_number: str,
               child_sid: str | None, answered: bool = True) -> CallControl:
    """The state of a call that has never been under control: a plain <Dial> of two legs.

    Incoming: the root leg is the outside caller and the child the answering browser of
    ``user``. Outgoing: the root leg is ``user``'s browser and the child the dialled number.
    """
    status: Status = "bridged" if answered else "ringing"
    outside_sid, user_sid = (root_sid, child_sid) if direction == "inbound" else (child_sid, root_sid)
    parties = (
        Party(call_sid=outside_sid, label=OUTSIDE_LABEL, kind="number", name=outside_number, status=status,
              outside=True),
        Party(call_sid=user_sid, label=user, kind="client", name=user, status=status),
    )
    return CallControl(root_sid=root_sid, number=number, direction=direction,
                       phase="bridged" if answered and child_sid else "ringing", parties=parties)


def with_call_sid(state: CallControl, label: str, call_sid: str) -> CallControl:
    """The state once Twilio has said which call it created for the party ``label``."""
    return _replace_party(state, label, call_sid=call_sid)


# ----------------------------------------------------------------------- steps


@dataclass(frozen=True)
class MoveIntoConference:
    """Redirect the child leg of the plain <Dial> (REST ``Twiml``); its parent follows via <Dial action>."""

    call_sid: str
    twiml: str


@dataclass(frozen=True)
class RedirectCall:
    """Give a call in progress new TwiML (voicemail, a goodbye): it leaves the conference."""

    call_sid: str
    twiml: str


@dataclass(frozen=True)
class Hold:
    conference_sid: str
    call_sid: str
    hold: bool
    hold_url: str | None = None


@dataclass(frozen=True)
class Ring:
    """Add a participant to the conference by calling it (Participants resource)."""

    conference_sid: str
    to: str  # client:NAME or E.164
    from_: str
    label: str
    timeout: int
    status_callback: str


@dataclass(frozen=True)
class Remove:
    conference_sid: str
    call_sid: str


@dataclass(frozen=True)
class EndCall:
    """Hang up a call (``Status=completed``): a target still ringing, typically."""

    call_sid: str


@dataclass(frozen=True)
class EndConference:
    conference_sid: str


Step = MoveIntoConference | RedirectCall | Hold | Ring | Remove | EndCall | EndConference


def undo_of(step: Step, rung_call_sid: str | None = None) -> Step | None:
    """The step that takes ``step`` back, or None when it cannot be taken back."""
    if isinstance(step, Hold):
        return replace(step, hold=not step.hold, hold_url=None)
    if isinstance(step, Ring) and rung_call_sid:
        return EndCall(rung_call_sid)
    return None


# --------------------------------------------------------------------- answers


@dataclass(frozen=True)
class Refusal:
    status: int  # the HTTP status of SPEC §6
    message: str


NOT_IN_PROGRESS = Refusal(409, "The call is not in progress.")
NOT_ON_CALL = Refusal(403, "You are not on this call.")
TRANSFER_UNDER_WAY = Refusal(409, "A transfer is already under way on this call.")
NO_TRANSFER = Refusal(409, "No transfer is under way on this call.")
# For the store: the route answers this when another request's steps are still running.
ANOTHER_CHANGE_UNDER_WAY = Refusal(409, "Another change to this call is under way; try again.")


@dataclass(frozen=True)
class Plan:
    """Twilio steps in order, and the state to store once they have all succeeded.

    ``checkpoints[i]`` is the state once ``steps[:i + 1]`` are done (what to store when
    a later step fails and cannot be undone); ``base`` is the state before the first
    step, with what a callback told already in it (what to store when a callback's first
    step fails; a request's failure stores the state it started from instead, as the
    request is refused whole). ``early_state``, when set, must be in
    the store *before* the steps run: Twilio calls back (the <Dial action> of a call
    moving into the conference) before the REST request returns. ``notices`` are
    sentences for the people on the call ("bob did not answer.").
    """

    steps: tuple[Step, ...]
    state: CallControl
    checkpoints: tuple[CallControl, ...] = ()
    early_state: CallControl | None = None
    notices: tuple[str, ...] = ()
    base: CallControl | None = None  # None: the same as ``state`` (a plan with no steps)


@dataclass(frozen=True)
class DialAnswer:
    """What the parent leg's <Dial action> answers while control moves the call into its conference.

    Store ``state`` (it may differ: a parent that leaves is marked gone); no steps are due.
    """

    twiml: str
    state: CallControl


class _Planner:
    """Collects steps, each with the state it leaves, while a plan is made."""

    def __init__(self, state: CallControl, config: ControlConfig):
        self.state = state
        self.config = config
        self.steps: list[Step] = []
        self.checkpoints: list[CallControl] = []
        self.notices: list[str] = []
        self.early = False
        self.base: CallControl | None = None

    def do(self, step: Step, state: CallControl) -> None:
        if not self.steps:
            self.base = self.state
        self.steps.append(step)
        self.state = state
        self.checkpoints.append(state)

    def set(self, state: CallControl) -> None:
        """A change with no step: it is in every checkpoint from here on."""
        self.state = state

    def plan(self) -> Plan:
        _reconcile(self)
        return Plan(steps=tuple(self.steps), state=self.state, checkpoints=tuple(self.checkpoints),
                    early_state=self.state if self.early else None, notices=tuple(self.notices),
                    base=self.base if self.steps else self.state)


# -------------------------------------------------------------------- requests


def plan_request(state: CallControl, request: Request, user: str, config: ControlConfig) -> Plan | Refusal:
    """What to do for ``user``'s request: a refusal, or the steps and the new state."""
    if state.phase not in ("bridged", "conference"):
        return NOT_IN_PROGRESS
    if not state.user_on_call(user):
        return NOT_ON_CALL
    planner = _Planner(state, config)
    match request:
        case HoldRequest(hold=hold):
            if state.transfer is not None:
                return TRANSFER_UNDER_WAY
            outside = state.outside
            if hold == state.hold_wanted and (outside.status != "joined" or outside.held == hold):
                return Plan(steps=(), state=state)  # already so: nothing to do, nothing to refuse
            planner.set(replace(state, hold_wanted=hold))
        case TransferRequest(to=to, mode=mode):
            if state.transfer is not None:
                return TRANSFER_UNDER_WAY
            if refusal := _refuse_target(state, to):
                return refusal
            target = _new_party(state, to)
            changed = replace(state, parties=(*state.parties, target), hold_wanted=True,
                              transfer=TransferUnderWay(to=to, mode=mode, label=target.label, by=user))
            planner.set(_user_leaves(changed, user) if mode == "cold" else changed)
        case CompleteRequest():
            if state.transfer is None or state.transfer.mode != "warm":
                return NO_TRANSFER
            target = state.party(label=state.transfer.label)
            changed = _user_leaves(state, state.transfer.by)  # "the user leaves": the one transferring
            if target is not None and target.status == "joined":
                planner.set(replace(changed, hold_wanted=False, transfer=None))
            else:
                # Completed before the target answered: what is left is a cold transfer.
                planner.set(replace(changed, transfer=replace(state.transfer, mode="cold")))
        case CancelRequest():
            if state.transfer is None or state.transfer.mode != "warm":
                return NO_TRANSFER
            changed = _replace_party(state, state.transfer.label, leaving=True)
            planner.set(replace(changed, hold_wanted=False, transfer=None))
        case AddRequest(to=to):
            if state.transfer is not None:
                return TRANSFER_UNDER_WAY
            if refusal := _refuse_target(state, to):
                return refusal
            planner.set(replace(state, parties=(*state.parties, _new_party(state, to)), hold_wanted=False))
        case _:
            raise TypeError(f"not a control request: {request!r}")
    if planner.state.phase == "bridged":
        _move_into_conference(planner)
    return planner.plan()


def _refuse_target(state: CallControl, to: Destination) -> Refusal | None:
    if to.kind == "number" and to.name == state.number:
        return Refusal(422, "That is this call's own number.")
    for party in state.parties:
        if party.active and party.kind == to.kind and party.name == to.name:
            return Refusal(422, f"{to.name} is already on this call.")
    return None


def _new_party(state: CallControl, to: Destination) -> Party:
    taken = {party.label for party in state.parties}
    label, n = to.name, 2
    while label in taken:  # labels name one participant of the conference, for ever
        label, n = f"{to.name}-{n}", n + 1
    return Party(call_sid=None, label=label, kind=to.kind, name=to.name, status="pending")


def _user_leaves(state: CallControl, user: str) -> CallControl:
    parties = tuple(replace(p, leaving=True) if p.kind == "client" and not p.outside and p.name == user
                    and p.status in ON_THE_LINE else p for p in state.parties)
    return replace(state, parties=parties)


def _move_into_conference(planner: _Planner) -> None:
    """Both legs of the plain <Dial> into the conference: the child by REST, the parent on its own.

    Redirecting the child ends the parent's <Dial>, so Twilio asks its <Dial action>
    (/voice/dial-complete), answered by :func:`on_dial_complete`. A child that is leaving
    anyway (a cold transfer by the browser that answered an incoming call) is given
    <Hangup/> instead of the conference.
    """
    state = replace(planner.state, phase="conference")
    child = next(p for p in state.parties if p.status == "bridged" and p.call_sid != state.root_sid)
    parties = []
    for party in state.parties:
        if party.status == "bridged":
            party = replace(party, status="left" if party.label == child.label and party.leaving else "connecting")
        parties.append(party)
    state = replace(state, parties=tuple(parties))
    document = twiml.hangup() if child.leaving else _conference_twiml(state, child, planner.config)
    planner.early = True
    planner.do(MoveIntoConference(call_sid=child.call_sid or "", twiml=document), state)


def _conference_twiml(state: CallControl, party: Party, config: ControlConfig) -> str:
    # The conference ends with the outside party: when they hang up, every team leg is let go.
    return twiml.conference(state.conference_name, config.conference_status_url, party.label,
                            end_on_exit=party.outside)


# ---------------------------------------------------------- Twilio's callbacks


def on_dial_complete(state: CallControl, config: ControlConfig) -> DialAnswer | None:
    """The parent leg's <Dial action> while its child is being moved: join the conference (or leave).

    None when control has nothing to say: the route answers as it always did.
    """
    parent = state.party(call_sid=state.root_sid)
    if state.phase != "conference" or parent is None or parent.status != "connecting":
        return None
    if parent.leaving:
        return DialAnswer(twiml=twiml.hangup(), state=_replace_party(state, parent.label, status="left"))
    return DialAnswer(twiml=_conference_twiml(state, parent, config), state=state)


def on_conference_event(state: CallControl, event: ConferenceEvent, config: ControlConfig) -> Plan:
    """React to a conference status callback: the new state, and any steps it calls for."""
    planner = _Planner(state, config)
    if state.phase == "ended" or event.root_sid != state.root_sid:
        return Plan(steps=(), state=state)
    if event.conference_sid and state.conference_sid != event.conference_sid:
        planner.set(replace(planner.state, conference_sid=event.conference_sid, phase="conference"))
    party = _party_of(planner.state, event)
    if party is not None and event.sequence is not None:
        if event.sequence <= party.sequence:
            return Plan(steps=(), state=state)  # older than what this party already told us
        planner.set(_replace_party(planner.state, party.label, sequence=event.sequence))
        party = planner.state.party(label=party.label)
    match event.event:
        case "conference-end":
            _conference_ended(planner)
        case "participant-join" if party is not None and party.status != "left":
            _joined(planner, party, event)
        case "participant-leave" if party is not None and party.status != "left":
            _gone(planner, party, event.participant_call_status)
        case "participant-hold" | "participant-unhold" if party is not None:
            # Twilio's word on a hold, kept in the books; it asks for no step (it may be the late
            # echo of a hold since taken back: reacting to it would fight our own requests).
            held = event.hold if event.hold is not None else event.event == "participant-hold"
            return Plan(steps=(), state=_replace_party(planner.state, party.label, held=held))
        case "participant-mute" | "participant-unmute" if party is not None:
            muted = event.muted if event.muted is not None else event.event == "participant-mute"
            planner.set(_replace_party(planner.state, party.label, muted=muted))
    return planner.plan()


def on_call_status(state: CallControl, call_sid: str, call_status: str, config: ControlConfig) -> Plan:
    """React to a status callback of one of the call's legs (a rung target, mostly)."""
    party = state.party(call_sid=call_sid)
    planner = _Planner(state, config)
    if (state.phase != "conference" or party is None or call_status not in TERMINAL_CALL_STATUSES
            or party.status not in ("ringing", "joined")):
        return Plan(steps=(), state=state)
    _gone(planner, party, call_status)
    return planner.plan()


def on_step_failed(state: CallControl, step: Step, message: str, config: ControlConfig) -> Plan:
    """A step of a *callback's* plan failed for good (a request's failure is its 502 instead).

    Without this a wanted change would be tried again at every callback and, for a
    target Twilio will not call, keep the caller on hold for ever: a ring that failed is
    a target that could not be reached; a hold that failed is given up, and said.
    """
    planner = _Planner(state, config)
    if isinstance(step, Ring):
        party = state.party(label=step.label)
        if party is not None and party.status in ("pending", "ringing"):
            _gone(planner, replace(party, status="pending"), "failed")
            return planner.plan()
    elif isinstance(step, Hold) and step.call_sid == state.outside.call_sid and state.hold_wanted == step.hold:
        planner.set(replace(state, hold_wanted=state.outside.held))
        planner.notices.append(f"The caller could not be {'put on' if step.hold else 'taken off'} hold: {message}")
        return planner.plan()
    return Plan(steps=(), state=state)


def _party_of(state: CallControl, event: ConferenceEvent) -> Party | None:
    return (state.party(call_sid=event.call_sid) if event.call_sid else None) or (
        state.party(label=event.label) if event.label else None)


def _joined(planner: _Planner, party: Party, event: ConferenceEvent) -> None:
    # A join reported late (after we held the party) must not undo the hold in our books.
    held = party.held if party.status == "joined" else bool(event.hold)
    state = _replace_party(planner.state, party.label, status="joined", call_sid=party.call_sid or event.call_sid,
                           held=held, muted=bool(event.muted))
    transfer = state.transfer
    if transfer is not None and transfer.label == party.label and transfer.mode == "cold":
        state = replace(state, hold_wanted=False, transfer=None)  # the target answered: connect them
    planner.set(state)


def _gone(planner: _Planner, party: Party, call_status: str | None) -> None:
    """A party left the conference, or its call ended before it joined."""
    answered = party.status == "joined"
    state = _replace_party(planner.state, party.label, status="left", held=False)
    planner.set(state)
    if party.outside:
        _outside_gone(planner)
        return
    transfer = state.transfer
    if transfer is not None and transfer.label == party.label:
        if transfer.mode == "cold":
            _cold_target_unanswered(planner, party, call_status)
        else:
            planner.set(replace(planner.state, hold_wanted=False, transfer=None))
            planner.notices.append(f"{party.name} {'hung up' if answered else _why_unanswered(call_status)}; "
                                   "the caller is back with you.")
        return
    if not answered and not party.leaving:
        planner.notices.append(f"{party.name} {_why_unanswered(call_status)}.")
    if (transfer is not None and transfer.mode == "warm" and party.kind == "client" and party.name == transfer.by
            and not party.leaving):
        # The transferring user's browser dropped: finish the transfer for them, so the
        # caller is never left on hold with nobody to take them off it.
        target = state.party(label=transfer.label)
        if target is not None and target.status == "joined":
            planner.set(replace(planner.state, hold_wanted=False, transfer=None))
        else:
            planner.set(replace(planner.state, transfer=replace(transfer, mode="cold")))
        planner.notices.append(f"{party.name} left during the transfer; {transfer.to.name} takes the call.")


def _cold_target_unanswered(planner: _Planner, party: Party, call_status: str | None) -> None:
    state = replace(planner.state, transfer=None, hold_wanted=False)
    outside = state.outside
    if not outside.active or outside.call_sid is None:
        planner.set(state)
        return
    voicemail = planner.config.voicemail_twiml if state.direction == "inbound" else None
    document = voicemail or twiml.refusal(planner.config.unanswered_message)
    # The outside party leaving the conference for its new TwiML ends it (endConferenceOnExit).
    planner.do(RedirectCall(call_sid=outside.call_sid, twiml=document), _ended(state))
    _stop_ringing(planner)
    planner.notices.append(f"{party.name} {_why_unanswered(call_status)}; the caller "
                           f"{'was sent to voicemail' if voicemail else 'was told, and the call ended'}.")


def _outside_gone(planner: _Planner) -> None:
    # endConferenceOnExit ends the conference for the team's legs; only a target still
    # ringing (not in the conference yet) must be stopped here.
    planner.set(_ended(planner.state))
    _stop_ringing(planner)


def _conference_ended(planner: _Planner) -> None:
    planner.set(_ended(planner.state))
    _stop_ringing(planner)


def _ended(state: CallControl) -> CallControl:
    """The conference is over: everyone in it (or on the way) is gone; a call still ringing is not."""
    parties = tuple(replace(p, status="left", held=False) if p.status in ("bridged", "connecting", "joined",
                                                                          "pending") else p
                    for p in state.parties)
    return replace(state, phase="ended", transfer=None, hold_wanted=False, parties=parties)


def _stop_ringing(planner: _Planner) -> None:
    for party in planner.state.parties:
        if party.status == "pending":
            planner.set(_replace_party(planner.state, party.label, status="left"))
        elif party.status == "ringing" and party.call_sid:
            planner.do(EndCall(party.call_sid), _replace_party(planner.state, party.label, status="left"))


def _why_unanswered(call_status: str | None) -> str:
    return {"busy": "is busy", "failed": "could not be reached"}.get(call_status or "", "did not answer")


# ------------------------------------------------------------------ reconcile


def _reconcile(planner: _Planner) -> None:
    """The steps Twilio allows now to bring what it does in line with what is wanted.

    Order: ring first (the step most likely to be refused, and undoable), hold before
    anyone leaves (the caller never hears the wrong person), take off hold last.
    """
    state = planner.state
    if state.phase != "conference":
        return
    for party in state.parties:
        if party.status == "pending" and party.leaving:
            planner.set(_replace_party(planner.state, party.label, status="left"))
    conference = state.conference_sid
    if conference is None:
        return  # the conference's SID comes with its first callback
    config = planner.config
    for party in planner.state.parties:
        if party.status == "pending":
            to = Destination(party.kind, party.name).address
            planner.do(Ring(conference_sid=conference, to=to, from_=state.number, label=party.label,
                            timeout=config.ring_timeout, status_callback=config.call_status_url),
                       _replace_party(planner.state, party.label, status="ringing"))
    outside = planner.state.outside
    if outside.status == "joined" and outside.call_sid and planner.state.hold_wanted and not outside.held:
        planner.do(Hold(conference, outside.call_sid, True, config.hold_url),
                   _replace_party(planner.state, outside.label, held=True))
    for party in planner.state.parties:
        if party.leaving and party.status == "joined" and party.call_sid:
            planner.do(Remove(conference, party.call_sid), _replace_party(planner.state, party.label, status="left"))
        elif party.leaving and party.status == "ringing" and party.call_sid:
            planner.do(EndCall(party.call_sid), _replace_party(planner.state, party.label, status="left"))
    outside = planner.state.outside
    if outside.status == "joined" and outside.call_sid and not planner.state.hold_wanted and outside.held:
        planner.do(Hold(conference, outside.call_sid, False),
                   _replace_party(planner.state, outside.label, held=False))
    _end_if_alone(planner)


def _end_if_alone(planner: _Planner) -> None:
    """The conference ends when no team member or target is left with the outside party."""
    state = planner.state
    if state.phase != "conference" or state.conference_sid is None or state.outside.status != "joined":
        return
    if any(party.active for party in state.parties if not party.outside):
        return
    planner.do(EndConference(state.conference_sid), _ended(state))


# ------------------------------------------------------------------------ view


def teammates_on(state: CallControl) -> list[str]:
    """The users with a browser leg on the call, now or earlier: they hear of its every change."""
    return sorted({party.name for party in state.parties if party.kind == "client"})


def seen_by(state: CallControl, user: str, numbers: Collection[str]) -> bool:
    """Whether ``user``, of ``numbers``, is told of the call's participants: its number's, or on it."""
    return state.number in numbers or user in teammates_on(state)


def participants_view(state: CallControl) -> dict:
    """The ``call_participants`` event's payload (SPEC §6), also the control routes' answer."""
    shown = {"bridged": "joined", "connecting": "joined", "pending": "ringing"}
    participants = []
    for party in state.parties:
        held = party.held or (party.outside and state.hold_wanted and party.status != "left")
        participants.append({
            "call_sid": party.call_sid, "label": party.label, "kind": party.kind, "name": party.name,
            "status": shown.get(party.status, party.status), "held": held, "muted": party.muted,
        })
    transfer = {"to": state.transfer.to.name, "mode": state.transfer.mode} if state.transfer else None
    return {"call_sid": state.root_sid, "conference": state.phase in ("conference", "ended"),
            "participants": participants, "transfer": transfer}


# ----------------------------------------------------------------------- helpers


def _replace_party(state: CallControl, label: str, **changes) -> CallControl:
    return replace(state, parties=tuple(replace(p, **changes) if p.label == label else p for p in state.parties))


def _flag(text: str | None) -> bool | None:
    if text is None or text == "":
        return None
    return text.strip().lower() == "true"


def _int(text: str | None) -> int | None:
    try:
        return int(text) if text not in (None, "") else None
    except ValueError:
        return None

