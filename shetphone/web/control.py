"""Call control's routes (SPEC §6) and its share of Twilio's callbacks.

``POST /calls/SID/hold``, ``/transfer``, ``/transfer/complete``, ``/transfer/cancel``
and ``/add``: parse, check the destination (a teammate, or a number checked as an
outgoing call is), let :mod:`shetphone.control` plan on the stored state, claim the
call, store the plan's early state, run its steps through :mod:`shetphone.twilio_rest`,
store what came of them, tell the call's rooms (``call_participants``) and answer.

Twilio's callbacks reach control through :mod:`.voice`: :func:`conference_callback`
(``/voice/conference``), :func:`status_callback` (a rung target's ``/voice/status``)
and :func:`dial_answer` (``/voice/dial-complete`` of a call moving into its
conference). A callback that comes while the claim is held waits in the call's
inbox; the claim's holder applies it before letting go (docs/call-control.md).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping

from flask import Blueprint, jsonify, request
from flask_login import current_user
from flask_wtf.csrf import CSRFError

from .. import control, current_team, phone_numbers, realtime
from ..dialing import DialRefused, check_destination
from ..directory import number_room
from ..store import StoreError
from ..store.control import CallFacts, Queued
from ..twilio_rest import TwilioRest, run_plan
from . import voice
from .auth import api_login_required, csrf_error_as_json

log = logging.getLogger(__name__)
bp = Blueprint("control", __name__, url_prefix="/calls")
bp.register_error_handler(CSRFError, csrf_error_as_json)

MODES = ("cold", "warm")
# The query parameter of a rung target's StatusCallback: its callbacks find their call by it,
# even those Twilio sends before the REST answer that tells us the target's CallSid.
ROOT_PARAMETER = "call"

Reaction = Callable[[control.CallControl], control.Plan]


class Refused(Exception):
    """A request answered with an error before control sees it (a bad body, a destination refused)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


# ---------------------------------------------------------------------- routes


@bp.post("/<call_sid>/hold")
@api_login_required
def hold(call_sid: str):
    hold = _body().get("hold")
    if not isinstance(hold, bool):
        return _error(400, 'Send {"hold": true} to hold, or {"hold": false} to resume.')
    return _control(call_sid, lambda number: control.HoldRequest(hold))


@bp.post("/<call_sid>/transfer")
@api_login_required
def transfer(call_sid: str):
    body = _body()
    mode = body.get("mode", "cold")
    if mode not in MODES or not isinstance(body.get("to"), str):
        return _error(400, 'Send {"to": a teammate or a number, "mode": "cold" or "warm"}.')
    return _control(call_sid, lambda number: control.TransferRequest(_destination(body["to"], number), mode))


@bp.post("/<call_sid>/transfer/complete")
@api_login_required
def complete(call_sid: str):
    return _control(call_sid, lambda number: control.CompleteRequest())


@bp.post("/<call_sid>/transfer/cancel")
@api_login_required
def cancel(call_sid: str):
    return _control(call_sid, lambda number: control.CancelRequest())


@bp.post("/<call_sid>/add")
@api_login_required
def add(call_sid: str):
    to = _body().get("to")
    if not isinstance(to, str):
        return _error(400, 'Send {"to": a teammate or a number}.')
    return _control(call_sid, lambda number: control.AddRequest(_destination(to, number)))


def _body() -> dict:
    body = request.get_json(silent=True)
    return body if isinstance(body, dict) else {}


def _error(status: int, message: str):
    return jsonify(error=message), status


def _answer(state: control.CallControl):
    """SPEC §6's answer: the call and its participants, as in the ``call_participants`` event."""
    return jsonify(control.participants_view(state)), 200


# ---------------------------------------------------------------------- a request


def _control(root: str, build: Callable[[str], control.Request]):
    """One control request of the user's, on call ``root``; ``build`` makes it, given the call's number."""
    team = current_team()
    if team.twilio_rest is None:
        return _error(503, "Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
    user = current_user.get_id()
    try:
        initial, number = _the_call(root, user)
        wanted = build(number)
    except Refused as refused:
        return _error(refused.status, refused.message)
    config = control_config(root)
    token = secrets.token_hex(16)
    begun = team.store.control.begin(root, token, lambda state: control.plan_request(state, wanted, user, config),
                                     initial)
    if begun is None:
        return _error(404, "No such call.")
    if isinstance(begun.outcome, control.Refusal):
        return _error(begun.outcome.status, begun.outcome.message)
    plan = begun.outcome
    if not begun.claimed:  # nothing for Twilio to do; the wish may have changed all the same
        if plan.state != begun.before:
            _announce(plan.state, plan.notices)
        return _answer(plan.state)
    return _carry_out(root, token, plan, begun.before)


def _the_call(root: str, user: str) -> tuple[control.CallControl | None, str]:
    """(the state to start from when the call was never under control, the call's number), or Refused."""
    controls = current_team().store.control
    stored = controls.get(root)
    if stored is not None:
        on_it = any(p.kind == "client" and p.name == user for p in stored.state.parties)
        if not _may_see(stored.state.number, on_it, user):
            raise Refused(404, "No such call.")
        return None, stored.state.number
    facts = controls.call_facts(root)
    if facts is None or not _may_see(facts.number, facts.client == user, user):
        raise Refused(404, "No such call.")
    initial = _first_state(root, facts)
    if isinstance(initial, control.Refusal):
        raise Refused(initial.status, initial.message)
    return initial, facts.number


def _carry_out(root: str, token: str, plan: control.Plan, before: control.CallControl):
    """The claim's holder: the plan's steps, their outcome stored, the callbacks that came meanwhile; the answer."""
    controls = current_team().store.control
    if plan.early_state is not None and plan.early_state != before:
        _announce(plan.early_state)
    latest = None
    try:
        outcome = run_plan(_rest(), plan, before)
        if controls.store(root, token, outcome.state):
            latest = outcome.state
            _announce(outcome.state, plan.notices)
    finally:
        latest = _drain(root, token) or latest
    if outcome.error is not None:
        return _error(502, outcome.error.message)
    return _answer(latest or outcome.state)


def _may_see(number: str, party: bool, user: str) -> bool:
    """A call of one of the user's numbers, or one they are a party of: else it is "no such call" to them."""
    return party or number in current_team().directory.numbers_of(user)


def _first_state(root: str, facts: CallFacts) -> control.CallControl | control.Refusal:
    """The state of a call never under control, from the call log: its two bridged legs."""
    leg = facts.answered
    if leg is None or leg.status != "in-progress":
        return control.NOT_IN_PROGRESS
    if facts.direction == "inbound":
        if not leg.to.startswith("client:"):
            return control.NOT_ON_CALL  # an outside phone of the ring group took it: no browser to control it
        user, outside = leg.to.removeprefix("client:"), facts.from_
    else:
        if not facts.client:
            return control.NOT_ON_CALL
        user, outside = facts.client, facts.to
    return control.call_state(root, facts.number, facts.direction, user, outside, leg.call_sid)


def _destination(to: str, number: str) -> control.Destination:
    """``to`` as control rings it: a teammate (``client:NAME`` or a user name) or a number, checked; else 422."""
    team = current_team()
    text = to.strip()
    name = text.removeprefix("client:")
    users = team.users.current
    if text.startswith("client:") or name in users:
        # A removed user is never rung, nor someone who shares no number with the person asking.
        me = current_user.get_id()
        if name not in users or name == me or name not in team.directory.teammates_of(me):
            raise Refused(422, f"{name or 'That'} is not a teammate who can be rung.")
        return control.Destination("client", name)
    try:
        dialled = check_destination(text, phone_numbers.region_of(number), team.policy)
    except DialRefused as refused:
        raise Refused(422, refused.reason) from None
    return control.Destination("number", dialled.e164)


def control_config(root: str) -> control.ControlConfig:
    """What control's plans need from the settings, for the call ``root`` (absolute URLs from public_url)."""
    settings = current_team().settings
    return control.ControlConfig(
        conference_status_url=voice.public_url_for("voice.conference"),
        call_status_url=voice.public_url_for("voice.status", **{ROOT_PARAMETER: root}),
        ring_timeout=settings.ring_timeout,
        hold_url=settings.hold_music_url or None,
        voicemail_twiml=voice._voicemail(),  # the number's voicemail, exactly as /voice/dial-complete answers it
    )


# ---------------------------------------------------------------------- Twilio's callbacks


def conference_callback(form: Mapping[str, str]) -> None:
    """/voice/conference: a conference status callback of one of our conferences."""
    root = control.root_sid_of(form.get("FriendlyName", ""))
    if root:
        _react(root, "conference", dict(form.items()))


def status_callback(form: Mapping[str, str], args: Mapping[str, str]) -> bool:
    """/voice/status of a target control rang: True when it is (then it is not the call log's), else False.

    Such a call has no ParentCallSid and comes From the call's team number; its
    StatusCallback names the call; without that, the party index does.
    """
    root = args.get(ROOT_PARAMETER)
    call_sid = form.get("CallSid", "")
    if not root:
        if form.get("ParentCallSid") or form.get("From") not in current_team().directory.team_numbers():
            return False
        root = current_team().store.control.root_of(call_sid)
        if root is None:
            return False
    status = form.get("CallStatus", "")
    if status in control.TERMINAL_CALL_STATUSES:  # the rest changes nothing: a join says more, and first
        _react(root, "status", {"call_sid": call_sid, "status": status})
    return True


def dial_answer(form: Mapping[str, str]) -> str | None:
    """/voice/dial-complete: the conference (or a hang-up) for a parent leg whose child control moved; else None."""
    if form.get("DialCallStatus") not in ("completed", "answered"):
        return None  # a <Dial> that rang out was never moved
    root = form.get("CallSid", "")
    controls = current_team().store.control
    try:
        stored = controls.get(root)
        if stored is None:
            return None
        answer = control.on_dial_complete(stored.state, control_config(root))
        if answer is not None and answer.state != stored.state:
            _react(root, "dial", {})  # the books: applied on whatever state holds when its turn comes
    except StoreError as exc:
        log.warning("call %s: could not read its control state at its <Dial action>: %s", root, exc)
        return None
    return answer.twiml if answer is not None else None


def _react(root: str, kind: str, payload: Mapping[str, str]) -> None:
    """Queue a callback for the call; when nobody holds its claim, take it and apply what is queued."""
    if current_team().twilio_rest is None:
        log.warning("call %s: a %s callback ignored: Twilio's REST API is not configured", root, kind)
        return
    token = secrets.token_hex(16)
    if current_team().store.control.enqueue(root, token, kind, payload):
        _drain(root, token)


def _drain(root: str, token: str) -> control.CallControl | None:
    """Apply the callbacks queued for the call, oldest first, then let go of its claim; the last state stored."""
    controls = current_team().store.control
    latest = None
    while (queued := controls.next_or_release(root, token)) is not None:
        try:
            latest = _apply(root, token, _reaction(root, queued)) or latest
        except StoreError:
            raise  # the claim lapses after CLAIM_SECONDS; the store cannot take anything now anyway
        except Exception:  # one bad callback must not keep the call's claim, nor the others waiting
            log.exception("call %s: a %s callback could not be applied", root, queued.kind)
    return latest


def _reaction(root: str, queued: Queued) -> Reaction:
    config = control_config(root)
    payload = queued.payload
    if queued.kind == "conference":
        event = control.ConferenceEvent.from_form(payload)
        return lambda state: control.on_conference_event(state, event, config)
    if queued.kind == "status":
        return lambda state: control.on_call_status(state, payload["call_sid"], payload["status"], config)

    def dial(state: control.CallControl) -> control.Plan:
        answer = control.on_dial_complete(state, config)
        return control.Plan(steps=(), state=answer.state if answer is not None else state)

    return dial


def _apply(root: str, token: str, reaction: Reaction) -> control.CallControl | None:
    """One reaction, for the claim's holder: its steps (nobody waits for their answer), then the store."""
    team = current_team()
    stored = team.store.control.get(root)
    if stored is None:
        return None
    plan = reaction(stored.state)
    outcome = run_plan(_rest(), plan, plan.base or plan.state) if plan.steps else None
    state = outcome.state if outcome is not None else plan.state
    if state != stored.state:
        if not team.store.control.store(root, token, state):
            return None
        _announce(state, plan.notices)
    elif plan.notices:
        _announce(state, plan.notices, participants=False)
    if outcome is not None and outcome.failed is not None:
        # Control decides what a failed step becomes: a target "could not be reached", a hold given up.
        failed, message, config = outcome.failed, outcome.error.message, control_config(root)
        return _apply(root, token, lambda s: control.on_step_failed(s, failed, message, config)) or state
    return state


def _rest() -> TwilioRest:
    rest = current_team().twilio_rest
    assert rest is not None  # the routes and _react checked
    return rest


def _announce(state: control.CallControl, notices: tuple[str, ...] = (), participants: bool = True) -> None:
    """``call_participants`` (and any notices) to the call's number room and to each teammate on it."""
    rooms = [number_room(state.number), *(f"user:{name}" for name in control.teammates_on(state))]
    if participants:
        realtime.emit_call_participants(control.participants_view(state), rooms)
    for notice in notices:
        realtime.emit_call_notice({"call_sid": state.root_sid, "notice": notice}, rooms)
