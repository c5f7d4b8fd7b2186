"""The page as a whole: its safety headers in a real browser, keyboard alone, a phone's width, close protection."""

from __future__ import annotations

import gzip
import json
import re

import pytest
import requests
from playwright.sync_api import expect

from browser.browser_helpers import MANIFEST, PHONE, ROOT, answered_call, fake_log, screenshot, start_phone
from shetphone.web.assets import ENTRIES, Manifest

pytestmark = pytest.mark.browser


def test_the_page_works_under_its_headers(open_dialer):
    page = open_dialer()
    response = page.reload()
    headers = response.headers
    assert "script-src 'self';" in headers["content-security-policy"]
    assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["referrer-policy"] == "same-origin"
    assert headers["permissions-policy"] == "microphone=(self), camera=(), geolocation=()"
    # Working under them: the app rendered, its styles applied, the phone starts, the socket connects.
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
    assert page.evaluate("getComputedStyle(document.querySelector('.keypad')).display") == "grid"
    start_phone(page)
    expect(page.locator(".shell")).to_have_attribute("data-realtime", "connected")
    # open_dialer checks afterwards that the CSP blocked nothing.


def test_keyboard_alone_starts_dials_mutes_and_hangs_up(open_dialer):
    page = open_dialer()
    page.locator("body").press("Tab")  # Log out comes first, in the header
    for _ in range(5):
        if page.evaluate("document.activeElement.textContent.trim()") == "Start":
            break
        page.keyboard.press("Tab")
    start = page.get_by_role("button", name="Start")
    expect(start).to_be_focused()
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline == "solid"  # a visible focus ring
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("phone-state")).to_have_text("Ready")
    expect(page.get_by_label("Phone number")).to_be_focused()  # not lost with the Start button
    page.keyboard.type("01595123456")
    expect(page.get_by_label("Phone number")).to_have_value("01595 123456")
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    page.keyboard.press("m")
    expect(page.get_by_role("button", name="Unmute")).to_be_visible()
    page.get_by_role("button", name="Hang up").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
    assert len(fake_log(page, "device.connect")) == 1 and len(fake_log(page, "call.disconnect")) == 1


def test_the_keyboard_lands_on_the_call_then_back_on_the_number(open_dialer):
    """The Call, Accept and Hang up buttons go with their press: the focus must not fall to the page's body."""
    page = open_dialer()
    start_phone(page)
    number = page.get_by_label("Phone number")
    page.keyboard.type("01595123456")
    page.keyboard.press("Enter")
    panel = page.get_by_role("group", name="Outgoing call Mum")
    expect(panel).to_be_focused()
    page.keyboard.type("1#")  # the keypad, from the keyboard, where the focus landed
    expect(page.get_by_test_id("digits-sent")).to_have_text("1#")
    page.get_by_role("button", name="Hang up").focus()
    page.keyboard.down("Enter")  # held down: the first press hangs up ...
    expect(number).to_be_focused()
    page.keyboard.down("Enter")  # ... and its repeat, now in the number field, does not dial again
    page.keyboard.up("Enter")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
    assert len(fake_log(page, "device.connect")) == 1

    page.locator("body").click()
    page.evaluate("() => window.__fakeDevice.incoming({From: '+441595123456'})")
    expect(page.get_by_role("button", name="Accept")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("group", name="Incoming call Mum")).to_be_focused()
    page.keyboard.press("m")
    expect(page.get_by_role("button", name="Unmute")).to_be_visible()


def test_a_call_ringing_while_a_number_is_typed_takes_neither_the_focus_nor_the_keys(open_dialer):
    page = open_dialer()
    start_phone(page)
    number = page.get_by_label("Phone number")
    number.click()
    page.keyboard.type("0159")
    page.evaluate("() => window.__fakeDevice.incoming({From: '+447700900123'})")
    expect(page.get_by_role("alert").filter(has_text="Incoming call")).to_be_visible()
    expect(number).to_be_focused()
    page.keyboard.type("5123456")
    expect(number).to_have_value("01595 123456")
    assert fake_log(page, "call.accept") == []
    page.get_by_role("button", name="Reject").click()


def test_a_focused_button_in_a_scrolling_list_shows_its_whole_ring(open_dialer, server):
    """On a wide screen the presets and recent calls scroll inside their cards, which clips what is
    outside them: a focused button's ring (outline and offset) must fit inside."""
    page = open_dialer()
    start_phone(page)  # the call rings alice's browser, so it is answered, not sent to voicemail
    answered_call(server, "CA" + "9" * 32, caller="+441595123456", called="+441595000001", seconds=12)
    for name in ["Call Mum, +44 1595 123456", re.compile(r"^Call back: Mum")]:
        button = page.get_by_role("button", name=name).first
        button.focus()
        page.keyboard.press("Shift+Tab")
        page.keyboard.press("Tab")  # from the keyboard: the ring is :focus-visible
        expect(button).to_be_focused()
        ring, clip = page.evaluate("""() => {
            const button = document.activeElement, style = getComputedStyle(button);
            if (style.outlineStyle === 'none') return [null, null];
            const grow = parseFloat(style.outlineWidth) + parseFloat(style.outlineOffset);
            const box = button.getBoundingClientRect();
            let scroller = button.parentElement;
            while (scroller && getComputedStyle(scroller).overflowY === 'visible') scroller = scroller.parentElement;
            const area = scroller.getBoundingClientRect();
            const left = area.left + scroller.clientLeft, top = area.top + scroller.clientTop;
            return [[box.left - grow, box.top - grow, box.right + grow, box.bottom + grow],
                    [left, top, left + scroller.clientWidth, top + scroller.clientHeight]];
        }""")
        assert ring is not None, f"{name}: no focus ring"
        left, top, right, bottom = ring
        assert left >= clip[0] and top >= clip[1] and right <= clip[2] and bottom <= clip[3], (name, ring, clip)


def test_a_phone_screen_shows_everything_without_sideways_scrolling(open_dialer):
    page = open_dialer(viewport=PHONE)
    start_phone(page)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    key = page.get_by_role("button", name="5 JKL").bounding_box()
    assert key["height"] >= 48 and key["width"] >= 48  # thumb-sized
    screenshot(page, "dialer-ready")


def test_closing_the_page_during_a_call_asks_first(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.get_by_role("button", name="Call Mum, +44 1595 123456").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    asked = []

    def on_dialog(dialog):
        asked.append(dialog.type)
        dialog.dismiss()  # the person stays

    page.on("dialog", on_dialog)
    page.close(run_before_unload=True)
    page.wait_for_function("() => true")  # the page is still there after the question
    assert asked == ["beforeunload"]
    page.remove_listener("dialog", on_dialog)
    page.get_by_role("button", name="Hang up").click()
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()


def test_tel_links_can_be_handed_to_the_page(open_dialer):
    page = open_dialer()
    page.get_by_role("button", name="Open tel: links here").click()
    expect(page.get_by_role("alert")).to_contain_text("tel:")


def test_the_first_load_fits_the_budget_and_the_sdk_waits_for_start(built_frontend, server):
    """At most 150 KB gzipped: the dialer's initial JS and CSS, the service worker and what it keeps
    (the login page's files, the icon), and the web app manifest. The Voice SDK is in none of it."""
    dist = ROOT / "static" / "dist"
    entry = Manifest(MANIFEST).entry(ENTRIES["dialer"], lambda file: file)
    initial = [*entry.scripts, *entry.preloads, *entry.styles]
    worker = (dist / "sw.js").read_bytes()
    build = json.loads(worker.split(b"\n", 1)[0].removeprefix(b"self.SHETPHONE_BUILD = ").rstrip(b";"))
    files = sorted({*initial, *build["precache"]})
    assert initial and set(initial) <= set(files)
    assert not any("twilio" in file for file in files)
    manifest = requests.get(server.url + "/manifest.webmanifest", timeout=10).content
    gzipped = sum(len(gzip.compress(body, 9)) for body in
                  [*((dist / file).read_bytes() for file in files), worker, manifest])
    assert gzipped <= 150 * 1024, f"{gzipped:,} bytes gzipped"
