"""The phone says what is wrong, in plain words, instead of hanging on "connecting"."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser.browser_helpers import LiveServer, make_team_files, screenshot, start_phone, start_server

pytestmark = pytest.mark.browser

# Twilio's hosts cannot be reached from here (no network); registration must end in an error.
UNREACHABLE_WITHIN_MS = 40_000


def test_the_real_sdk_with_twilio_unreachable_shows_a_clear_error(open_dialer):
    page = open_dialer(fake_device=False)
    assert page.evaluate("typeof window.__shetphoneDeviceFactory") == "undefined"  # the production path
    with page.expect_response(lambda response: "/assets/twilio-" in response.url) as sdk:
        page.get_by_role("button", name="Start").click()
    assert sdk.value.ok  # the Voice SDK arrives on Start, not with the page
    state = page.get_by_test_id("phone-state")
    expect(state).to_have_text("Not working", timeout=UNREACHABLE_WITHIN_MS)
    expect(page.get_by_test_id("phone-error")).to_contain_text("Twilio unreachable")
    screenshot(page, "phone-twilio-unreachable")
    # Try again replaces the stuck Device with a new one (a new token) and ends in the same clear error.
    with page.expect_response("**/token") as token:
        page.get_by_role("button", name="Try again").click()
    assert token.value.ok
    expect(page.get_by_test_id("phone-error")).to_contain_text("Twilio unreachable", timeout=UNREACHABLE_WITHIN_MS)


def test_no_microphone_is_said_in_words(open_dialer):
    page = open_dialer()
    page.evaluate("""() => {
        const denied = new DOMException('Permission denied', 'NotAllowedError');
        navigator.mediaDevices.getUserMedia = () => Promise.reject(denied);
    }""")
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_test_id("phone-error")).to_contain_text("No microphone")
    assert page.evaluate("window.__fakeDevice.devices.length") == 0


def test_a_microphone_refused_when_a_call_starts_or_during_it_is_said_in_words(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.evaluate("""() => {
        const denied = new DOMException('Permission denied', 'NotAllowedError');
        window.__fakeDevice.device.connect = async () => { throw denied };
    }""")
    page.get_by_role("button", name="Call Mum, +44 1595 123456").click()
    expect(page.locator("#call-status")).to_have_text(
        "The call could not start. No microphone: allow this page to use a microphone, or plug one in.")
    page.evaluate("() => { delete window.__fakeDevice.device.connect }")  # the fake's own again, from its class
    page.get_by_role("button", name="Call Mum, +44 1595 123456").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    page.evaluate("""() => window.__fakeDevice.lastCall.emit('error', {code: 31401, name: 'PermissionDeniedError',
        message: 'PermissionDeniedError (31401): The browser or end-user denied permissions to user media.'})""")
    expect(page.locator("#call-status")).to_have_text(
        "The call failed. No microphone: allow this page to use a microphone, or plug one in.")


@pytest.fixture(scope="module")
def unconfigured_server(tmp_path_factory):
    files = make_team_files(tmp_path_factory.mktemp("unconfigured"))
    files.environ = {name: value for name, value in files.environ.items() if not name.startswith("TWILIO_")}
    live: LiveServer = start_server(files)
    yield live
    live.stop()


def test_twilio_not_configured_is_said_once_by_the_phone_state(browser, unconfigured_server):
    from browser.browser_helpers import PageProblems, log_in, new_context

    context = new_context(browser, unconfigured_server)
    log_in(context, unconfigured_server)
    page = context.new_page()
    problems = PageProblems(page)
    page.goto("/")
    expect(page.get_by_test_id("phone-state")).to_have_text("Not configured")
    expect(page.get_by_test_id("phone-error")).to_contain_text("Calls need Twilio’s settings on the server")
    expect(page.get_by_test_id("phone-error")).to_contain_text("TWILIO_ACCOUNT_SID")
    expect(page.get_by_text("not configured", exact=False)).to_have_count(1)  # once, in one place
    expect(page.get_by_role("button", name="Start")).to_have_count(0)  # it could only fail
    expect(page.get_by_text("Start the phone")).to_have_count(0)  # nor is the person told to press it
    page.get_by_label("Phone number").fill("01595 123456")
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_disabled()
    page.get_by_label("Phone number").press("Enter")  # nor does Enter try
    expect(page.get_by_text("not configured", exact=False)).to_have_count(1)
    assert page.evaluate("window.__fakeDevice.devices.length") == 0
    screenshot(page, "phone-not-configured")
    assert problems.csp(page) == [] and problems.errors == []
    context.close()
