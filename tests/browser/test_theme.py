"""The dark theme: by the system's prefers-color-scheme, or by the switch (light, dark,
system), which the browser remembers and the server writes into the page before any script.
Screenshots of both themes, at phone and desktop sizes, go to test-output/screenshots/.
"""

from __future__ import annotations

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
