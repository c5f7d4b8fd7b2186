"""Calls set up through the Twilio stand-in, for the call-control tests (routes and browser)."""

from __future__ import annotations

from twilio_standin import Call, TwilioStandIn

TEAM = "+441595000001"  # rings alice and bob
CALLER = "+447700900123"


def settle(standin: TwilioStandIn) -> None:
    """Every callback posted and answered: by hand (manual mode), or waited for (auto mode)."""
    if standin.mode == "auto":
        standin.wait_idle()
    else:
        standin.run()


def answered_incoming(standin: TwilioStandIn, by: str = "alice", caller: str = CALLER,
                      number: str = TEAM) -> tuple[Call, Call]:
    """A caller rings the team number and ``by``'s browser answers: (the caller's root leg, the browser's)."""
    root = standin.incoming_call(caller, number)
    settle(standin)
    browser = next(c for c in standin.children_of(root.sid) if c.to == f"client:{by}")
    standin.answer(browser.sid)
    settle(standin)
    return root, browser


def answered_outgoing(standin: TwilioStandIn, to: str, by: str = "alice") -> tuple[Call, Call]:
    """``by``'s browser calls ``to``, who answers: (the browser's root leg, the dialled number's)."""
    root = standin.browser_call(by, to)
    settle(standin)
    (dialled,) = standin.children_of(root.sid)
    standin.answer(dialled.sid)
    settle(standin)
    return root, dialled


def rung(standin: TwilioStandIn, to: str) -> Call:
    """The call Twilio placed to ``to`` (client:NAME or a number) for a conference, still ringing."""
    return next(c for c in standin.calls_to(to) if c.participant is not None and c.active)


def conference_of(standin: TwilioStandIn, root_sid: str):
    return standin.conference_named(f"shetphone-{root_sid}")
