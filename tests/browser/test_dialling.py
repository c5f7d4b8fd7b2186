"""Entering a number every way a person can, and what Call sends to the Device."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser.browser_helpers import PHONE, fake_log, screenshot, start_phone

pytestmark = pytest.mark.browser


def connects(page) -> list[dict]:
    return [entry["params"] for entry in fake_log(page, "device.connect")]


def test_start_creates_the_device_after_the_click_and_shows_ready(open_dialer):
    page = open_dialer()
    expect(page.get_by_test_id("phone-state")).to_have_text("Offline")
    assert fake_log(page, "device.create") == []  # nothing before the person's gesture
    start_phone(page)
    created = fake_log(page, "device.create")
    assert len(created) == 1 and created[0]["token"].count(".") == 2  # the server's JWT
    assert fake_log(page, "device.register") == [None]


def test_typing_formats_as_you_type_and_enter_dials(open_dialer):
    page = open_dialer()
    start_phone(page)
    number = page.get_by_label("Phone number")
    number.click()
    page.keyboard.type("01595123456")
    expect(number).to_have_value("01595 123456")
    expect(page.locator("#number-problem")).to_have_text("+44 1595 123456")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_enabled()
    screenshot(page, "dialer-number-typed")
    page.keyboard.press("Enter")
    expect(page.locator("#call-status")).to_have_text("Calling Mum…")  # the preset's alias
    assert connects(page) == [{"To": "+441595123456", "CallerId": "+441595000001"}]


def test_keys_typed_anywhere_go_to_the_number_backspace_deletes_and_escape_clears(open_dialer):
    page = open_dialer()
    number = page.get_by_label("Phone number")
    page.locator("body").click()
    page.keyboard.type("0159512")
    expect(number).to_have_value("01595 12")
    page.keyboard.press("Backspace")
    page.keyboard.press("Backspace")
    expect(number).to_have_value("01595")
    page.keyboard.press("Escape")
    expect(number).to_have_value("")
    # Backspace in the field takes a digit, never just a space of the formatting.
    number.click()
    page.keyboard.type("01595 1")
    page.keyboard.press("Backspace")
    expect(number).to_have_value("01595")


def test_a_pasted_number_loses_its_formatting(open_dialer):
    page = open_dialer()
    page.get_by_label("Phone number").focus()
    page.evaluate("""() => {
        const data = new DataTransfer();
        data.setData('text', 'tel:+44 (0)1595-123.456');
        document.getElementById('number').dispatchEvent(
            new ClipboardEvent('paste', {clipboardData: data, bubbles: true, cancelable: true}));
    }""")
    expect(page.get_by_label("Phone number")).to_have_value("+44 1595 123456")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_enabled()


def test_an_invalid_or_forbidden_number_disables_call(open_dialer):
    page = open_dialer()
    number = page.get_by_label("Phone number")
    call = page.get_by_role("button", name="Call", exact=True)
    expect(call).to_be_disabled()  # nothing entered yet
    number.fill("12345")
    expect(call).to_be_disabled()
    expect(page.locator("#number-problem")).to_contain_text("Not a valid phone number")
    number.fill("+33 1 23 45 67 89")  # France: valid, but the team may call GB and US only
    expect(page.locator("#number-problem")).to_have_text("Calls to France are not allowed.")
    expect(call).to_be_disabled()
    number.press("Enter")
    assert connects(page) == []
    number.fill("01595 123456")
    expect(call).to_be_enabled()


def test_enter_on_a_number_that_cannot_be_called_says_why_on_the_status_line(open_dialer):
    page = open_dialer()
    number = page.get_by_label("Phone number")
    status = page.get_by_role("status")  # the live region screen readers hear; the problem under the field is not
    number.fill("12345")
    number.press("Enter")
    expect(status).to_have_text("Cannot call this number. Not a valid phone number in United Kingdom.")
    number.press("6")  # typing on: the refusal was for the number as it was
    expect(status).to_have_text("")
    number.fill("+33 1 23 45 67 89")
    page.locator("body").press("Enter")  # Enter anywhere on the page dials too
    expect(status).to_have_text("Cannot call this number. Calls to France are not allowed.")
    assert connects(page) == []


def test_deleting_the_last_digit_with_its_button_leaves_the_focus_in_the_field(open_dialer):
    page = open_dialer()
    number = page.get_by_label("Phone number")
    number.fill("01")
    delete = page.get_by_role("button", name="Delete last digit")
    delete.focus()
    page.keyboard.press("Enter")
    expect(number).to_have_value("0")
    expect(delete).to_be_focused()
    page.keyboard.press("Enter")  # the button goes with the last digit
    expect(number).to_have_value("")
    expect(delete).to_have_count(0)
    expect(number).to_be_focused()


def test_the_keypad_enters_the_number_and_call_dials_it(open_dialer):
    page = open_dialer(viewport=PHONE)
    start_phone(page)
    for name in ["0 +", "1", "5 JKL", "9 WXYZ", "5 JKL", "7 PQRS", "7 PQRS", "7 PQRS", "9 WXYZ", "0 +", "0 +"]:
        page.get_by_role("button", name=name, exact=True).click()
    expect(page.get_by_label("Phone number")).to_have_value("01595 777900")
    screenshot(page, "dialer-keypad")
    page.get_by_role("button", name="Call", exact=True).click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    assert connects(page) == [{"To": "+441595777900", "CallerId": "+441595000001"}]


def test_holding_zero_on_the_keypad_gives_plus(open_dialer):
    page = open_dialer(viewport=PHONE)
    zero = page.get_by_role("button", name="0 +", exact=True)
    zero.hover()
    page.mouse.down()
    expect(page.get_by_label("Phone number")).to_have_value("+")  # while still held
    page.mouse.up()
    for name in ["4 GHI", "4 GHI", "1", "5 JKL", "9 WXYZ", "5 JKL", "1", "2 ABC", "3 DEF", "4 GHI", "5 JKL", "6 MNO"]:
        page.get_by_role("button", name=name, exact=True).click()
    expect(page.get_by_label("Phone number")).to_have_value("+44 1595 123456")


def test_call_before_start_starts_the_phone_then_dials(open_dialer):
    page = open_dialer()
    page.get_by_label("Phone number").fill("01595 123456")
    page.get_by_role("button", name="Call", exact=True).click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    assert len(fake_log(page, "device.create")) == 1
    assert connects(page) == [{"To": "+441595123456", "CallerId": "+441595000001"}]


def test_a_preset_fills_the_number_and_dials_from_the_matching_caller_id(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.get_by_role("button", name="Call Dad, +1 201 555 0123").click()
    expect(page.locator("#call-status")).to_have_text("Calling Dad…")
    assert connects(page) == [{"To": "+12015550123", "CallerId": "+15005550006"}]  # the US caller ID for a US number


def test_the_chosen_caller_id_is_sent(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.get_by_label("Caller ID").select_option("+15005550006")
    page.get_by_label("Phone number").fill("01595 123456")
    page.get_by_role("button", name="Call", exact=True).click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    assert connects(page) == [{"To": "+441595123456", "CallerId": "+15005550006"}]


def test_the_region_selector_reads_national_numbers(open_dialer):
    page = open_dialer()
    region = page.get_by_label("Region")
    expect(region).to_have_value("GB")  # the region of alice's first caller ID
    page.get_by_label("Phone number").fill("4155550123")  # San Francisco, written as Americans do
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_disabled()
    region.select_option("US")
    expect(page.get_by_label("Phone number")).to_have_value("(415) 555-0123")
    expect(page.locator("#number-problem")).to_have_text("+1 415 555 0123")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_enabled()


def test_a_dial_link_fills_the_number_and_waits_for_one_click(open_dialer):
    page = open_dialer("/?dial=tel%3A%2B441595123456")
    expect(page.get_by_label("Phone number")).to_have_value("+44 1595 123456")
    expect(page.locator("#call-status")).to_have_text("Press Call to dial this number.")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_focused()
    assert fake_log(page, "device.create") == [] and connects(page) == []  # never dials by itself
    page.keyboard.press("Enter")  # the one click (or key) on the focused Call button
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    assert connects(page) == [{"To": "+441595123456", "CallerId": "+441595000001"}]


def test_the_preset_list_filters_and_follows_presets_changed(open_dialer, server):
    page = open_dialer()
    presets = page.get_by_role("region", name="Presets")
    expect(presets.get_by_role("button")).to_have_count(2)
    rows = ["Office,44,1595 000010", "Ferry terminal,44,1595 000011", "Doctor,44,1595 000012",
            "Veterinary surgery and animal hospital (out of hours),44,1595 000013"]
    original = server.files.presets.read_text(encoding="utf-8")
    server.files.presets.write_text(original + "\n".join(rows) + "\n", encoding="utf-8")
    try:
        # The server notices the file, emits presets_changed, and the page fetches the list again.
        expect(presets.get_by_role("button")).to_have_count(6, timeout=15000)
        page.set_viewport_size(PHONE)  # a long name is cut short, never widening the page
        assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
        screenshot(page, "dialer-presets")
        page.get_by_label("Filter presets").fill("ferry")
        expect(presets.get_by_role("button")).to_have_count(1)
        screenshot(page, "dialer-presets-filtered")
        presets.get_by_role("button", name="Call Ferry terminal, +44 1595 000011").click()
        expect(page.get_by_role("button", name="Hang up")).to_be_visible()
        assert connects(page)[-1]["To"] == "+441595000011"
    finally:
        server.files.presets.write_text(original, encoding="utf-8")
