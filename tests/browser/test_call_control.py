"""Call control in the page: hold, warm transfer completed and cancelled, a three-way call, and
the Team panel's one-click transfer to or add of an available teammate.

The real server, its twilio_api_base pointing at the Twilio stand-in in auto mode: the
stand-in answers the server's REST requests and posts Twilio's callbacks (signed) to
the server as they come. Only the browser's Device is the fake one.
"""

from __future__ import annotations

import re

import pytest
from call_control_helpers import CALLER, TEAM, conference_of, rung
from playwright.sync_api import expect
from twilio_standin import HttpCallbacks, TwilioStandIn

from browser.browser_helpers import PHONE, make_team_files, screenshot, start_phone, start_server
from browser.test_accessibility import AXE, AXE_OPTIONS

pytestmark = pytest.mark.browser

HOLD_MUSIC = "https://phone.example.test/static/hold.mp3"
MUM = "+441595123456"


@pytest.fixture(scope="module")
def twilio():
    standin = TwilioStandIn(mode="auto")
    yield standin
    standin.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, twilio):
    """The browser tests' server (see conftest), with Twilio's REST API at the stand-in."""
    files = make_team_files(tmp_path_factory.mktemp("team"),
                            extra=f"twilio_api_base = {twilio.url}\nhold_music_url = {HOLD_MUSIC}")
    twilio.accept(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"])
    live = start_server(files)
    twilio.connect(HttpCallbacks(), live.url)
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def calls_end_with_their_test(twilio):
    """A call left in progress keeps alice busy, and the next test's caller would not ring her."""
    yield
    for call in list(twilio.calls.values()):
        if call.active and call.status == "in-progress":
            twilio.hang_up(call.sid)
            twilio.wait_idle()


def answer_a_caller(page, twilio):
    """A caller rings the team number; alice's page rings with that leg and she accepts it."""
    start_phone(page)
    root = twilio.incoming_call(CALLER, TEAM)
    twilio.wait_idle()
    leg = next(c for c in twilio.children_of(root.sid) if c.to == "client:alice")
    page.evaluate("([from, sid]) => window.__fakeDevice.incoming({From: from, CallSid: sid})", [CALLER, leg.sid])
    page.get_by_role("button", name="Accept").click()
    twilio.answer(leg.sid)
    twilio.wait_idle()
    expect(page.get_by_role("button", name="Hold", exact=True)).to_be_visible()  # the call's root is known
    return root, leg


def in_conference(twilio, root_sid: str) -> set[str]:
    conference = conference_of(twilio, root_sid)
    return {p.label for p in conference.participants.values()} if conference else set()


def held(twilio, call_sid: str) -> bool:
    party = twilio.participant(call_sid)
    return bool(party and party.hold)


def rung_when_rung(twilio, to: str):
    """The call Twilio places to ``to`` once the server rings it (it may, after answering the page)."""
    twilio.wait_until(lambda: any(c.participant is not None for c in twilio.calls_to(to)), f"{to} rung")
    return rung(twilio, to)


def participant(page, name: str):
    return page.get_by_test_id("participants").get_by_role("listitem").filter(has_text=name)


def ring(page, action: str, who: str, mode: str | None = None) -> None:
    """Open the destination picker by keyboard, choose, and ring."""
    page.get_by_role("button", name=action, exact=True).focus()
    page.keyboard.press("Enter")
    target = page.get_by_label("Who")
    expect(target).to_be_focused()
    target.select_option(label=who)
    if mode:
        page.get_by_label(mode).check()
    page.get_by_role("button", name="Ring", exact=True).click()


def bob_rung_for_a_warm_transfer(page, twilio):
    """alice answers a caller and starts a warm transfer to bob, whose browsers ring: (root, her leg, his call)."""
    root, leg = answer_a_caller(page, twilio)
    ring(page, "Transfer", "bob", mode="Talk to them first (warm)")
    expect(participant(page, "bob")).to_contain_text("ringing")
    expect(participant(page, "+44 7700 900123")).to_contain_text("on hold")
    return root, leg, rung_when_rung(twilio, "client:bob")


def test_hold_and_resume(open_dialer, twilio):
    page = open_dialer(viewport=PHONE)
    root, _ = answer_a_caller(page, twilio)
    hold = page.get_by_role("button", name="Hold", exact=True)
    expect(hold).to_have_attribute("aria-pressed", "false")
    hold.click()
    resume = page.get_by_role("button", name="Resume", exact=True)
    expect(resume).to_have_attribute("aria-pressed", "true")
    expect(participant(page, "+44 7700 900123")).to_contain_text("on hold")
    expect(participant(page, "You")).not_to_contain_text("on hold")
    twilio.wait_until(lambda: held(twilio, root.sid), "the caller on hold")
    assert twilio.call(root.sid).heard[-1] == f"hold:{HOLD_MUSIC}"
    # 360 pixels wide: the controls fit without scrolling sideways.
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    screenshot(page, "call-on-hold")

    resume.press("Enter")  # by keyboard too
    expect(page.get_by_role("button", name="Hold", exact=True)).to_have_attribute("aria-pressed", "false")
    expect(participant(page, "+44 7700 900123")).not_to_contain_text("on hold")
    twilio.wait_until(lambda: not held(twilio, root.sid), "the caller off hold")


def test_a_warm_transfer_completed(open_dialer, twilio):
    page = open_dialer()
    root, leg, bob = bob_rung_for_a_warm_transfer(page, twilio)
    twilio.answer(bob.sid)
    expect(participant(page, "bob")).not_to_contain_text("ringing")
    complete = page.get_by_role("button", name="Complete transfer", exact=True)
    expect(complete).to_be_focused()  # where the keyboard lands once bob is rung
    screenshot(page, "call-warm-transfer")
    complete.click()
    twilio.wait_until(lambda: in_conference(twilio, root.sid) == {"outside", "bob"} and not held(twilio, root.sid),
                      "the caller with bob, off hold")
    assert not twilio.call(leg.sid).active  # alice's leg left the conference and ended
    page.evaluate("() => window.__fakeDevice.lastCall.hungUpRemotely()")  # what the SDK then says
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()


def test_a_warm_transfer_cancelled(open_dialer, twilio):
    page = open_dialer()
    root, _, bob = bob_rung_for_a_warm_transfer(page, twilio)
    twilio.answer(bob.sid)
    expect(participant(page, "bob")).not_to_contain_text("ringing")
    page.get_by_role("button", name="Cancel transfer", exact=True).click()
    expect(participant(page, "bob")).to_have_count(0)
    expect(participant(page, "+44 7700 900123")).not_to_contain_text("on hold")
    expect(page.get_by_role("button", name="Transfer", exact=True)).to_be_enabled()
    twilio.wait_until(lambda: in_conference(twilio, root.sid) == {"outside", "alice"} and not held(twilio, root.sid),
                      "the caller with alice, off hold")
    assert not twilio.call(bob.sid).active


def test_a_three_way_call_and_a_refused_destination_said_once(open_dialer, twilio):
    page = open_dialer()
    root, _ = answer_a_caller(page, twilio)
    # A typed number the dialing policy refuses: the server's words, in the panel.
    page.get_by_role("button", name="Add", exact=True).click()
    page.get_by_label("Who").select_option(label="A number…")
    page.get_by_label("Number", exact=True).fill("+33 1 42 68 53 00")
    page.get_by_role("button", name="Ring", exact=True).click()
    expect(page.locator(".control-problem")).to_have_text("Sorry, calls to that country are not allowed.")
    expect(page.locator(".control-problem")).to_have_attribute("role", "alert")
    page.get_by_label("Who").select_option(label="Mum")
    page.get_by_role("button", name="Ring", exact=True).click()
    expect(page.locator(".control-problem")).to_have_count(0)
    expect(participant(page, "Mum")).to_contain_text("ringing")
    twilio.answer(rung_when_rung(twilio, MUM).sid)
    expect(participant(page, "Mum")).not_to_contain_text("ringing")
    expect(page.get_by_test_id("participants").get_by_role("listitem")).to_have_count(3)
    expect(page.get_by_test_id("participants")).not_to_contain_text("on hold")
    twilio.wait_until(lambda: in_conference(twilio, root.sid) == {"outside", "alice", MUM}, "three on the call")
    assert not any(p.hold for p in conference_of(twilio, root.sid).participants.values())
    screenshot(page, "call-three-way")


def test_an_unanswered_warm_transfer_is_said_and_the_caller_is_back(open_dialer, twilio):
    page = open_dialer()
    root, _, bob = bob_rung_for_a_warm_transfer(page, twilio)
    twilio.no_answer(bob.sid)
    expect(page.get_by_test_id("call-notice")).to_have_text("bob did not answer; the caller is back with you.")
    expect(participant(page, "+44 7700 900123")).not_to_contain_text("on hold")
    twilio.wait_until(lambda: not held(twilio, root.sid), "the caller off hold")


class CuttableSocket:
    """The page's Socket.IO connection (long-polling and WebSocket) through routes, to cut it and let it back."""

    def __init__(self, page):
        self.cut = False
        self.websockets: list = []
        page.route(re.compile(r"/socket\.io/"), self._polling)
        page.route_web_socket(re.compile(r"/socket\.io/"), self._websocket)

    def _polling(self, route) -> None:
        if self.cut:
            route.abort("internetdisconnected")
        else:
            route.continue_()

    def _websocket(self, websocket) -> None:
        if self.cut:
            websocket.close()
            return
        websocket.connect_to_server()  # then every message is passed on as it comes
        self.websockets.append(websocket)

    def drop(self) -> None:
        """As a network gone: the page's connection closes and its attempts to reconnect fail."""
        self.cut = True
        for websocket in self.websockets:
            websocket.close()  # the server's side closes with it
        self.websockets.clear()

    def restore(self) -> None:
        self.cut = False


def test_a_page_that_reconnects_mid_transfer_shows_the_call_as_it_is_now(open_dialer, twilio):
    """Its connection drops while bob answers the warm transfer; back, its panel shows him on the call at once."""
    routes = {}
    page = open_dialer(before_load=lambda page: routes.update(socket=CuttableSocket(page)))
    root, _, bob = bob_rung_for_a_warm_transfer(page, twilio)
    routes["socket"].drop()
    expect(page.get_by_role("alert")).to_contain_text("Reconnecting")
    twilio.answer(bob.sid)
    twilio.wait_until(lambda: "bob" in in_conference(twilio, root.sid), "bob in the conference")
    twilio.wait_idle()  # the server has announced it, to a page that was not there
    expect(participant(page, "bob")).to_contain_text("ringing")
    routes["socket"].restore()
    expect(page.get_by_role("alert")).to_contain_text("Reconnected", timeout=20000)
    expect(participant(page, "bob")).not_to_contain_text("ringing")  # no further change of the call needed
    expect(participant(page, "+44 7700 900123")).to_contain_text("on hold")
    expect(page.get_by_role("button", name="Complete transfer", exact=True)).to_be_visible()


def team_member(page, name: str):
    return page.get_by_role("region", name="Team").locator(f'li.team-member[data-user="{name}"]')


def bob_available_during_the_call(page, bob):
    """bob starts his phone once alice is in the call: the Team panel offers him in one click."""
    bob.phone(True)
    expect(team_member(page, "bob").get_by_test_id("team-state")).to_have_text("Available")
    expect(team_member(page, "alice").get_by_role("button")).to_have_count(0)  # not herself


def test_the_team_panel_transfers_to_an_available_teammate_in_one_click(open_dialer, twilio, bob):
    page = open_dialer(init_script=AXE.read_text(encoding="utf-8"))
    bob.phone(True)
    expect(team_member(page, "bob").get_by_test_id("team-state")).to_have_text("Available")
    expect(team_member(page, "bob").get_by_role("button")).to_have_count(0)  # no call: nothing to hand over
    bob.phone(False)
    expect(team_member(page, "bob").get_by_test_id("team-state")).to_have_text("Offline")
    root, leg = answer_a_caller(page, twilio)
    expect(team_member(page, "bob").get_by_role("button")).to_have_count(0)  # offline: nothing to offer
    bob_available_during_the_call(page, bob)
    transfer = team_member(page, "bob").get_by_role("button", name="Transfer to bob", exact=True)
    expect(transfer).to_have_text("Transfer to bob")  # "to bob" is for screen readers; the name holds "Transfer"
    result = page.evaluate("(options) => axe.run({include: ['.team']}, options)", AXE_OPTIONS)
    assert result["passes"] and result["violations"] == []  # label-in-name included: "Transfer" is in the name
    screenshot(page, "team-panel-in-a-call")
    transfer.focus()  # from the keyboard
    page.keyboard.press("Enter")
    bob_call = rung_when_rung(twilio, "client:bob")
    expect(page.locator(".cold-transfer")).to_have_text("Transferring to bob…")
    expect(team_member(page, "bob").get_by_role("button")).to_have_count(0)  # one transfer at a time
    twilio.answer(bob_call.sid)
    twilio.wait_until(lambda: in_conference(twilio, root.sid) == {"outside", "bob"}, "the caller with bob")
    assert not twilio.call(leg.sid).active  # a cold transfer: alice is gone


def test_the_team_panel_adds_an_available_teammate_in_one_click_and_says_a_refusal_once(open_dialer, twilio, bob):
    page = open_dialer()
    root, _ = answer_a_caller(page, twilio)
    bob_available_during_the_call(page, bob)
    add = team_member(page, "bob").get_by_role("button", name="Add bob", exact=True)
    refusal = "A transfer is already under way on this call."
    page.route("**/calls/*/add", lambda route: route.fulfill(status=409, json={"error": refusal}))
    add.click()
    expect(page.locator(".control-problem")).to_have_text(refusal)  # the call panel's place for it ...
    expect(page.get_by_text(refusal)).to_have_count(1)  # ... and nowhere else
    page.unroute("**/calls/*/add")
    add.click()
    expect(page.locator(".control-problem")).to_have_count(0)
    expect(participant(page, "bob")).to_contain_text("ringing")
    twilio.answer(rung_when_rung(twilio, "client:bob").sid)
    expect(participant(page, "bob")).not_to_contain_text("ringing")
    twilio.wait_until(lambda: in_conference(twilio, root.sid) == {"outside", "alice", "bob"}, "three on the call")


@pytest.mark.parametrize("theme", ["light", "dark"])
def test_the_panel_with_someone_held_and_someone_ringing_is_accessible(open_dialer, twilio, theme):
    """axe on the call's controls (the rest of the page is test_accessibility's), in both themes."""
    page = open_dialer(init_script=AXE.read_text(encoding="utf-8"))
    page.emulate_media(color_scheme=theme)
    bob_rung_for_a_warm_transfer(page, twilio)
    result = page.evaluate("(options) => axe.run({include: ['.call-controls']}, options)", AXE_OPTIONS)
    assert result["passes"]
    problems = [f"{rule['id']}: {' '.join(node['target'])}" for rule in result["violations"] for node in rule["nodes"]]
    problems += [f"contrast not judged: {' '.join(node['target'])}" for rule in result["incomplete"]
                 if rule["id"] == "color-contrast" for node in rule["nodes"]]
    assert problems == []
    screenshot(page, f"a11y-{theme}-call-transfer")
