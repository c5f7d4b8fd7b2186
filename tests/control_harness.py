"""In memory, what the store and the routes will do around control.py: a reference wiring, for tests.

It is the app's side of the Twilio stand-in (its ``connect`` target): it answers
/voice, /voice/status, /voice/dial-complete and /voice/conference as SPEC §6 has
them, and plays the control routes with :meth:`ControlHarness.request`. The
protocol it follows is the one the real store and routes need:

- a request plans on the stored state; it takes the call's claim (or is answered
  409 "another change under way"); it stores the plan's ``early_state`` before
  the steps run, runs them with ``run_plan``, stores the outcome's state, and
  answers 200 with the participants, or 502 with Twilio's message;
- a callback arriving while the claim is held is kept in the call's inbox and
  applied, in order, by the claim's holder before it lets go (so no update is lost);
- the <Dial action> only reads: ``on_dial_complete`` answers from whatever is stored.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from urllib.parse import urlsplit

from twilio.request_validator import RequestValidator

from shetphone import control, twiml
from shetphone.twilio_rest import TwilioRest, run_plan


class ControlHarness:
    def __init__(self, standin, public_url: str, team_number: str, clients: tuple[str, ...],
                 config: control.ControlConfig, voicemail_twiml: str):
        self.standin = standin
        self.public = public_url
        self.team_number = team_number
        self.clients = clients
        self.config = config
        self.voicemail_twiml = voicemail_twiml
        self.rest = TwilioRest(standin.account_sid, standin.auth_token, api_base=standin.url)
        self.validator = RequestValidator(standin.auth_token)
        self.states: dict[str, control.CallControl] = {}
        self.callers: dict[str, tuple[str, str]] = {}  # root -> (direction, other party)
        self.claimed: set[str] = set()
        self.inbox: dict[str, list] = {}
        self.emitted: list[dict] = []  # call_participants payloads, in order
        self.notices: list[str] = []
        self.lock = threading.RLock()
        standin.connect(self, public_url)

    # ------------------------------------------------------------------ routes

    def request(self, root: str, user: str, request: control.Request) -> tuple[int, dict]:
        """POST /calls/ROOT/hold|transfer|... as ``user``: the status and JSON the route answers."""
        with self.lock:
            state = self.states.get(root)
            if state is None:
                return 404, {"error": "no such call"}
            plan = control.plan_request(state, request, user, self.config)
            if isinstance(plan, control.Refusal):
                return plan.status, {"error": plan.message}
            if not plan.steps:  # no step, yet maybe a change (a hold taken back before it was done)
                self._store(root, plan.state, plan.notices)
                return 200, {"call_sid": root, "participants": control.participants_view(plan.state)["participants"]}
            if root in self.claimed:
                refusal = control.ANOTHER_CHANGE_UNDER_WAY
                return refusal.status, {"error": refusal.message}
            self.claimed.add(root)
            if plan.early_state is not None:
                self.states[root] = plan.early_state
        # No lock held while Twilio works: its callbacks may come before its answer does.
        outcome = run_plan(self.rest, plan, state)
        with self.lock:
            self._store(root, outcome.state, plan.notices)
        self._release(root)
        if outcome.error is not None:
            return 502, {"error": outcome.error.message}
        return 200, {"call_sid": root, "participants": control.participants_view(self.states[root])["participants"]}

    def post(self, url: str, params: Mapping[str, str], headers: Mapping[str, str]) -> tuple[int, str]:
        assert self.validator.validate(url, dict(params), headers["X-Twilio-Signature"]), url
        path = urlsplit(url).path
        if path == "/voice":
            return 200, self._voice(params)
        if path == "/voice/dial-complete":
            return 200, self._dial_complete(params)
        if path == "/voice/status":
            self._status(params)
        elif path == "/voice/conference":
            event = control.ConferenceEvent.from_form(params)
            if event.root_sid in self.states:
                self._react(event.root_sid, lambda state: control.on_conference_event(state, event, self.config))
        return 204, ""

    # --------------------------------------------------------------- webhooks

    def _voice(self, params) -> str:
        caller, called, root = params["From"], params["To"], params["CallSid"]
        if caller.startswith("client:"):
            self.callers[root] = ("outbound", called)
            return twiml.outbound_dial(called, self.team_number, self.public + "/voice/status",
                                       action_url=self.public + "/voice/dial-complete")
        self.callers[root] = ("inbound", caller)
        return twiml.ring_group(self.clients, 20, self.public + "/voice/dial-complete", self.public + "/voice/status")

    def _dial_complete(self, params) -> str:
        with self.lock:
            state = self.states.get(params["CallSid"])
            answer = control.on_dial_complete(state, self.config) if state else None
            if answer is not None:
                self.states[state.root_sid] = answer.state
                return answer.twiml
        if params.get("DialCallStatus") in ("no-answer", "busy", "failed"):
            return self.voicemail_twiml
        return twiml.hangup()

    def _status(self, params) -> None:
        root = params.get("ParentCallSid")
        with self.lock:
            if root in self.callers and root not in self.states and params["CallStatus"] == "in-progress":
                # The child leg answered: the call is now one control can act on (in the app: the call log).
                direction, other = self.callers[root]
                browser = params["To"] if direction == "inbound" else self.standin.call(root).from_
                self.states[root] = control.call_state(root, self.team_number, direction,
                                                       browser.removeprefix("client:"), other, params["CallSid"])
                self._store(root, self.states[root], ())
                return
            owner = next((r for r, s in self.states.items() if s.party(call_sid=params["CallSid"])), None)
        if owner is not None:
            self._react(owner, lambda state: control.on_call_status(state, params["CallSid"], params["CallStatus"],
                                                                    self.config))

    # ---------------------------------------------------------------- the store

    def _react(self, root: str, reaction) -> None:
        with self.lock:
            if root in self.claimed:
                self.inbox.setdefault(root, []).append(reaction)  # the claim's holder applies it
                return
            self.claimed.add(root)
        self._apply(root, reaction)
        self._release(root)

    def _apply(self, root: str, reaction) -> None:
        with self.lock:
            before = self.states[root]
        plan = reaction(before)
        outcome = run_plan(self.rest, plan, plan.base) if plan.steps else None
        with self.lock:
            self._store(root, outcome.state if outcome else plan.state, plan.notices)
        if outcome is not None and outcome.failed is not None:
            # Nobody waits for a callback's answer: control decides what a failed step becomes.
            self._apply(root, lambda state: control.on_step_failed(state, outcome.failed, outcome.error.message,
                                                                   self.config))

    def _release(self, root: str) -> None:
        """Apply what came in while the claim was held, in order; then let go."""
        while True:
            with self.lock:
                if not self.inbox.get(root):
                    self.claimed.discard(root)
                    return
                reaction = self.inbox[root].pop(0)
            self._apply(root, reaction)

    def _store(self, root: str, state: control.CallControl, notices) -> None:
        changed = self.states.get(root) != state
        self.states[root] = state
        self.notices.extend(notices)
        if changed:
            self.emitted.append(control.participants_view(state))
