"""axe-core (frontend/node_modules, a dev dependency) finds nothing against WCAG 2.1 A and AA,
nor its best practices, on the login page and on the dialer (idle, ringing, in a call, with
the call's controls, the team, recent calls), in both themes. Its "label in name" rule
(experimental in axe) is switched on: the keypad's names, and the recent calls' call-back
buttons', once differed from their visible text.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from browser.browser_helpers import (
    ROOT,
    PageProblems,
    answered_call,
    new_context,
    ring_unanswered,
    screenshot,
    start_phone,
)

pytestmark = pytest.mark.browser

AXE = ROOT / "frontend" / "node_modules" / "axe-core" / "axe.min.js"
AXE_OPTIONS = {
    "runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]},
    "rules": {"label-content-name-mismatch": {"enabled": True}},
}
THEMES = ["light", "dark"]


def axe_problems(page: Page) -> tuple[list[str], list[str]]:
    """(violations, contrast axe could not judge), one line per element."""
    result = page.evaluate("(options) => axe.run(document, options)", AXE_OPTIONS)

    def lines(rules):
        return [f"{rule['id']}: {' '.join(node['target'])}: {node['failureSummary'] or rule['help']}"
                for rule in rules for node in rule["nodes"]]

    assert result["passes"], "axe ran no check at all"
    return lines(result["violations"]), lines(rule for rule in result["incomplete"] if rule["id"] == "color-contrast")


def assert_accessible(page: Page, what: str) -> None:
    violations, unjudged_contrast = axe_problems(page)
    assert violations == [], f"{what}:\n" + "\n".join(violations)
    # Every text's contrast was measured (none hidden behind an image or a gradient axe cannot read).
    assert unjudged_contrast == [], f"{what}:\n" + "\n".join(unjudged_contrast)


@pytest.mark.parametrize("theme", THEMES)
def test_the_login_page(browser, server, theme):
    context = new_context(browser, server, fake_device=False, color_scheme=theme)
    context.add_init_script(path=str(AXE))
    page = context.new_page()
    problems = PageProblems(page)
    page.goto("/login")
    expect(page.get_by_role("heading", name="Log in", level=1)).to_be_visible()
    assert_accessible(page, f"login, {theme}")
    page.get_by_label("User name").fill("nobody")
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_be_visible()  # the failed login's message
    assert_accessible(page, f"login with its error, {theme}")
    screenshot(page, f"a11y-{theme}-login")
    assert problems.csp(page) == [] and problems.errors == []
    context.close()


@pytest.mark.parametrize("theme", THEMES)
def test_the_dialer_idle_ringing_and_in_a_call(open_dialer, theme):
    page = open_dialer(init_script=AXE.read_text(encoding="utf-8"))
    page.emulate_media(color_scheme=theme)
    expect(page.get_by_role("heading", level=1)).to_have_text("Shetphone")
    assert_accessible(page, f"dialer before Start, {theme}")
    start_phone(page)
    page.get_by_label("Phone number").fill("01595 12")  # a number half typed: its problem is shown
    assert_accessible(page, f"dialer idle, {theme}")
    page.get_by_label("Phone number").fill("")

    page.evaluate("() => window.__fakeDevice.incoming({From: '+441595123456'})")
    expect(page.get_by_test_id("incoming-caller")).to_have_text("Mum")
    assert_accessible(page, f"dialer ringing, {theme}")
    screenshot(page, f"a11y-{theme}-ringing")

    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    page.get_by_role("button", name="Mute").click()  # the muted flag and the warning colours
    page.evaluate("() => window.__fakeDevice.lastCall.emit('warning', 'high-rtt')")
    expect(page.get_by_test_id("call-warnings")).to_be_visible()
    assert_accessible(page, f"dialer in a call, {theme}")
    screenshot(page, f"a11y-{theme}-call")

    # An outgoing call, answered: the page names it by its own leg, and shows its controls and
    # participants; the transfer picker is opened too.
    page.get_by_role("button", name="Hang up").click()
    page.get_by_role("button", name="Call Mum, +44 1595 123456").click()
    page.evaluate("() => window.__fakeDevice.lastCall.answered('CA' + 'a1'.repeat(16))")
    page.get_by_role("button", name="Transfer", exact=True).click()
    expect(page.get_by_label("Who")).to_be_focused()
    page.get_by_label("Talk to them first (warm)").check()
    assert_accessible(page, f"dialer in a call with its controls, {theme}")
    screenshot(page, f"a11y-{theme}-call-controls")

@pytest.mark.parametrize("theme", THEMES)
def test_the_team_panel_do_not_disturb_and_a_transcript(open_dialer, server, theme):
    import socketio
    from conftest import live_login

    bob = socketio.Client(http_session=live_login(server, "bob"), reconnection=False)
    bob.connect(server.url, transports=["websocket"], wait_timeout=10)
    try:
        bob.emit("phone", {"ready": True})
        page = open_dialer(init_script=AXE.read_text(encoding="utf-8"))
        page.emulate_media(color_scheme=theme)
        team = page.get_by_role("region", name="Team")
        expect(team.locator('[data-user="bob"] [data-testid="team-state"]')).to_have_text("Available")
        digit = "1" if theme == "light" else "2"
        call_sid, recording_sid = "CA" + digit * 32, "RE" + digit * 32
        # Recent calls with call-back buttons (a missed one, an answered one from a preset, whose number shows
        # beside its alias), and a withheld caller's voicemail with its transcript (no button).
        missed, answered = "CA" + digit * 31 + "a", "CA" + digit * 31 + "b"
        ring_unanswered(server, missed, "+447700900123", "+441595000001", "bob")
        answered_call(server, answered, caller="+441595123456", called="+441595000001", seconds=42)
        server.post_signed("/voice", {"CallSid": call_sid, "From": "anonymous", "To": "+441595000001"})
        server.post_signed("/voice/recording", {
            "CallSid": call_sid, "RecordingSid": recording_sid, "RecordingStatus": "completed",
            "RecordingDuration": "4", "RecordingUrl": f"https://api.twilio.com/Recordings/{recording_sid}"})
        server.post_signed("/voice/transcription", {
            "CallSid": call_sid, "RecordingSid": recording_sid, "TranscriptionStatus": "completed",
            "TranscriptionText": "Call me back when you can."})
        expect(page.get_by_test_id("voicemail-transcript").first).to_be_visible()
        expect(page.locator(f'li.log-row[data-call-sid="{missed}"]').get_by_role("button")).to_have_accessible_name(
            re.compile(r"^Call back: \+44 7700 900123, New, Missed, "))
        expect(page.locator(f'li.log-row[data-call-sid="{answered}"]').get_by_role("button")).to_have_accessible_name(
            re.compile(r"^Call back: Mum, \+44 1595 123456, .*0:42 — incoming call$"))
        assert_accessible(page, f"team panel, recent calls and a transcript, {theme}")
        switch = page.get_by_role("switch", name="Do not disturb")
        switch.click()
        expect(switch).to_have_attribute("aria-checked", "true")
        expect(team.locator('[data-user="alice"] [data-testid="team-state"]')).to_have_text("Do not disturb")
        assert_accessible(page, f"do not disturb on, {theme}")
        screenshot(page, f"a11y-{theme}-team")
        switch.click()  # as it was, for the other tests of this module
        expect(switch).to_have_attribute("aria-checked", "false")
    finally:
        bob.disconnect()
