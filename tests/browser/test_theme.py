"""The dark theme: by the system's prefers-color-scheme, or by the switch (light, dark,
system), which the browser remembers and the server writes into the page before any script.
Screenshots of both themes, at phone and desktop sizes, go to test-output/screenshots/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from browser.browser_helpers import screenshot, start_phone
from shetphone.web.appshell import THEME_COLORS, THEME_COOKIE

pytestmark = pytest.mark.browser

GROUND = {"light": "rgb(238, 242, 246)", "dark": "rgb(15, 21, 28)"}  # --ground in base.css
INK = {"light": "rgb(23, 32, 46)", "dark": "rgb(230, 235, 241)"}  # --ink


def shown_theme(page: Page) -> str:
    """Which palette the page is painted in, read from its computed colours."""
    colours = page.evaluate("""() => ({ground: getComputedStyle(document.body).backgroundColor,
                                      ink: getComputedStyle(document.body).color})""")
    for theme in ("light", "dark"):
        if colours == {"ground": GROUND[theme], "ink": INK[theme]}:
            return theme
    raise AssertionError(f"neither theme: {colours}")


def theme_color(page: Page) -> str:
    """The theme-color the browser would use for its frame: the first meta whose media matches."""
    return page.evaluate("""() => [...document.querySelectorAll('meta[name="theme-color"]')]
        .find((meta) => !meta.media || matchMedia(meta.media).matches).content""")


def theme_cookie(page: Page) -> dict | None:
    return next((cookie for cookie in page.context.cookies() if cookie["name"] == THEME_COOKIE), None)


def open_with(open_dialer, system: str, choice: str) -> Page:
    """The dialer on a system in ``system`` colours, after a click on the switch's ``choice``."""
    page = open_dialer()
    page.emulate_media(color_scheme=system)
    page.get_by_role("radio", name=choice).check()
    return page


def test_the_system_theme_is_followed_live(open_dialer):
    page = open_dialer()
    page.emulate_media(color_scheme="dark")
    start_phone(page)
    expect(page.get_by_role("radio", name="System")).to_be_checked()
    assert shown_theme(page) == "dark" and theme_color(page) == THEME_COLORS["dark"]
    screenshot(page, "theme-dark-system")
    page.emulate_media(color_scheme="light")  # the system changes at dusk: the page follows at once
    assert shown_theme(page) == "light" and theme_color(page) == THEME_COLORS["light"]
    screenshot(page, "theme-light-system")


def test_the_switch_chooses_dark_and_the_choice_is_remembered(open_dialer):
    page = open_with(open_dialer, "light", "Dark")
    assert shown_theme(page) == "dark" and theme_color(page) == THEME_COLORS["dark"]
    assert page.evaluate("document.querySelector('meta[name=color-scheme]').content") == "dark"
    cookie = theme_cookie(page)
    assert cookie["value"] == "dark" and cookie["path"] == "/"

    response = page.reload()
    assert '<html lang="en" data-theme="dark">' in response.text()  # painted dark from the first byte
    expect(page.get_by_role("radio", name="Dark")).to_be_checked()
    assert shown_theme(page) == "dark"
    start_phone(page)
    screenshot(page, "theme-dark-chosen")
    page.evaluate("() => window.__fakeDevice.incoming({From: '+441595123456'})")
    expect(page.get_by_test_id("incoming-caller")).to_have_text("Mum")
    screenshot(page, "theme-dark-ringing")
    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    screenshot(page, "theme-dark-call")
    page.get_by_role("button", name="Hang up").click()

    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    assert shown_theme(page) == "dark"  # the login page too
    screenshot(page, "theme-dark-login")


def test_light_wins_over_a_dark_system_until_system_is_chosen_again(open_dialer):
    page = open_with(open_dialer, "dark", "Light")
    assert shown_theme(page) == "light" and theme_color(page) == THEME_COLORS["light"]
    page.keyboard.press("ArrowRight")  # a radio group: the arrow keys move the choice
    expect(page.get_by_role("radio", name="Dark")).to_be_checked()
    assert shown_theme(page) == "dark"
    page.keyboard.press("ArrowRight")
    expect(page.get_by_role("radio", name="System")).to_be_checked()
    assert shown_theme(page) == "dark"  # the system's again
    assert page.evaluate("document.documentElement.hasAttribute('data-theme')") is False
    assert theme_cookie(page) is None
    page.emulate_media(color_scheme="light")
    assert shown_theme(page) == "light"


def luminance(rgb: list[int]) -> float:
    channels = [c / 255 for c in rgb]
    linear = [c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4 for c in channels]
    return 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]


def contrast(one: list[int], other: list[int]) -> float:
    lighter, darker = sorted([luminance(one), luminance(other)], reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


@pytest.mark.parametrize("theme", ["Light", "Dark"])
def test_the_focused_theme_choice_shows_a_ring_that_stands_out_from_its_fill(open_dialer, theme):
    """The arrow keys choose as they move, so the focused segment is always the chosen, teal one: its ring
    must differ by 3:1 (WCAG 1.4.11) from what it is drawn against. Read from the pixels, as a person sees it."""
    page = open_dialer()
    choice = page.get_by_role("radio", name=theme)
    choice.check()
    page.keyboard.press("ArrowRight")
    page.keyboard.press("ArrowLeft")  # back, from the keyboard: the ring is :focus-visible
    expect(choice).to_be_focused()
    segment = page.locator("label.segment.chosen")
    outline = segment.evaluate("(label) => getComputedStyle(label).outlineColor")
    focus = [int(part) for part in re.findall(r"\d+", outline)][:3]
    png = segment.screenshot(animations="disabled")
    # The middle row of the segment's pixels, decoded by the browser itself.
    row = page.evaluate("""async (bytes) => {
        const image = await createImageBitmap(new Blob([new Uint8Array(bytes)], {type: 'image/png'}));
        const canvas = new OffscreenCanvas(image.width, image.height);
        const context = canvas.getContext('2d');
        context.drawImage(image, 0, 0);
        const data = context.getImageData(0, Math.floor(image.height / 2), image.width, 1).data;
        const pixels = [];
        for (let i = 0; i < data.length; i += 4) pixels.push([data[i], data[i + 1], data[i + 2]]);
        return pixels;
    }""", list(png))
    is_ring = [max(abs(a - b) for a, b in zip(pixel, focus, strict=True)) <= 8 for pixel in row]
    assert any(is_ring), f"no pixel of the focus colour {focus} on the segment"
    start = is_ring.index(True)
    inside = next(pixel for pixel, ring in zip(row[start:], is_ring[start:], strict=True) if not ring)
    assert contrast(focus, inside) >= 3, f"the ring {focus} against {inside}: {contrast(focus, inside):.2f}:1"
