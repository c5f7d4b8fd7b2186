"""The tab of a page left open all day says what is happening: a call ringing, a call and
its length, missed calls; an installed app's icon shows the missed count (setAppBadge)."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browser.browser_helpers import PHONE, ring_unanswered, start_phone

pytestmark = pytest.mark.browser

TEAM_NUMBER = "+441595000001"  # rings alice and bob
MUM = "+441595123456"  # a preset: "Mum"

# What the page asks of the app badge, recorded (Chromium has the API; it shows only when installed).
BADGE_LOG = """
window.__badges = [];
navigator.setAppBadge = (count) => { window.__badges.push(count); return Promise.resolve(); };
navigator.clearAppBadge = () => { window.__badges.push('cleared'); return Promise.resolve(); };
"""


def test_the_title_says_calling_ringing_on_a_call_and_missed_calls(open_dialer, server):
    page = open_dialer(viewport=PHONE, init_script=BADGE_LOG)  # a phone: the recent calls start out of sight
    start_phone(page)
    expect(page).to_have_title("Shetphone")
    page.get_by_role("button", name="Call Mum, +44 1595 123456").click()
    expect(page).to_have_title("Calling: Mum")  # before the other side answers
    page.evaluate("() => window.__fakeDevice.lastCall.answered('CA' + 'e3'.repeat(16))")
    expect(page).to_have_title(re.compile(r"^On a call 0:0\d$"))
    page.get_by_role("button", name="Hang up").click()
    expect(page).to_have_title("Shetphone")

    page.evaluate("() => window.scrollTo(0, 0)")  # the recent calls out of sight again: nothing is seen
    ring_unanswered(server, "CA" + "7d" * 16, "+447700900123", TEAM_NUMBER, "alice")
    expect(page).to_have_title("(1) Shetphone")
    page.wait_for_function("() => window.__badges.at(-1) === 1")

    page.clock.install()
    page.clock.pause_at(page.evaluate("() => Date.now()") + 1000)  # the call's clock moves when the test says
    page.evaluate("(from) => window.__fakeDevice.incoming({From: from})", MUM)
    expect(page).to_have_title("(1) Ringing: Mum")
    page.get_by_role("button", name="Accept").click()
    expect(page).to_have_title("(1) On a call 0:00")
    page.clock.fast_forward("01:23")
    expect(page).to_have_title("(1) On a call 1:23")
    page.get_by_role("button", name="Hang up").click()
    expect(page).to_have_title("(1) Shetphone")
    page.clock.resume()

    page.get_by_role("button", name="Mark seen").click()
    expect(page).to_have_title("Shetphone")
    page.wait_for_function("() => window.__badges.at(-1) === 'cleared'")


def test_a_call_ringing_in_a_background_tab_shows_in_its_title(open_dialer):
    page = open_dialer()
    start_phone(page)
    other = page.context.new_page()  # the dialer's tab goes to the background
    other.goto("/healthz")
    page.evaluate("() => window.__fakeDevice.incoming({From: '+447700900555'})")
    expect(page).to_have_title("Ringing: +44 7700 900555")
    page.evaluate("() => window.__fakeDevice.lastCall.emit('cancel')")  # the caller gave up
    expect(page).to_have_title("Shetphone")
    other.close()
