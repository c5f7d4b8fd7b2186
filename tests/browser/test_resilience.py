"""What keeps the phone working all day: re-registration, reconnection banners, notifications."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browser.browser_helpers import fake_log, start_phone, start_server

pytestmark = pytest.mark.browser

# A stand-in for the browser's Notification, with permission granted, and a page
# that is not in front (hasFocus false), which is when the page notifies.
BACKGROUND_NOTIFICATIONS = """
window.__notifications = [];
window.Notification = class {
  static permission = 'granted';
  static requestPermission() { return Promise.resolve('granted'); }
  constructor(title, options) { this.title = title; this.options = options; this.closed = false;
                                window.__notifications.push(this); }
  close() { this.closed = true; }
};
Document.prototype.hasFocus = () => false;
"""


def test_a_failed_registration_is_said_then_retried_until_ready(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.evaluate("""() => {
        const device = window.__fakeDevice.device;
        device.state = 'unregistered';
        device.emit('error', {code: 53000, message: 'Signaling connection error'});
    }""")
    expect(page.get_by_test_id("phone-error")).to_contain_text("Twilio unreachable")
    # The page tries again by itself (after 2 s the first time): the fake registers, and the phone is Ready.
    expect(page.get_by_test_id("phone-state")).to_have_text("Ready", timeout=10000)
    assert len(fake_log(page, "device.register")) == 2


def test_an_unexpected_unregistration_registers_again(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.evaluate("""() => {
        const device = window.__fakeDevice.device;
        device.state = 'unregistered';
        device.emit('unregistered');
    }""")
    page.wait_for_function("() => window.__fakeDevice.entries('device.register').length === 2", timeout=10000)
    expect(page.get_by_test_id("phone-state")).to_have_text("Ready")


def test_an_incoming_call_in_the_background_notifies_and_a_click_accepts(open_dialer):
    page = open_dialer(init_script=BACKGROUND_NOTIFICATIONS)
    start_phone(page)
    page.evaluate("() => window.__fakeDevice.incoming({From: '+441595123456'})")
    page.wait_for_function("() => window.__notifications.length === 1")
    shown = page.evaluate("() => ({title: __notifications[0].title, body: __notifications[0].options.body})")
    assert shown == {"title": "Incoming call", "body": "Mum (+44 1595 123456)"}
    page.evaluate("() => window.__notifications[0].onclick()")
    expect(page.get_by_role("status")).to_have_text("Connected to Mum")
    assert len(fake_log(page, "call.accept")) == 1
    assert page.evaluate("() => window.__notifications[0].closed") is True


def test_a_lost_server_shows_reconnecting_then_reconnected(open_dialer, server):
    page = open_dialer()
    shell = page.locator(".shell")
    expect(shell).to_have_attribute("data-realtime", "connected")
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    expect(page.get_by_role("alert")).to_contain_text("Lost the connection to Shetphone. Reconnecting")
    restarted = start_server(server.files, port=port)  # same secret key: the session cookie still holds
    server.process = restarted.process
    expect(page.get_by_role("alert")).to_contain_text("Reconnected", timeout=20000)
    expect(shell).to_have_attribute("data-realtime", "reconnected")


def test_a_token_refresh_lost_to_a_server_restart_is_retried_and_the_number_typed_is_kept(open_dialer, server):
    page = open_dialer()
    start_phone(page)
    number = page.get_by_label("Phone number")
    number.click()
    page.keyboard.type("01595 12")
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    expect(page.get_by_role("alert")).to_contain_text("Reconnecting")
    page.evaluate("() => window.__fakeDevice.device.emit('tokenWillExpire')")  # while the server is down
    expect(page.get_by_test_id("phone-error")).to_contain_text("Shetphone’s server cannot be reached")
    page.keyboard.type("34")  # the person types on meanwhile
    server.process = start_server(server.files, port=port).process
    expect(page.get_by_role("alert")).to_contain_text("Reconnected", timeout=20000)
    # The token is fetched again (at once, the server being back), and the phone says it is Ready again.
    expect(page.get_by_test_id("phone-state")).to_have_text("Ready")
    tokens = fake_log(page, "device.updateToken")
    assert len(tokens) == 1 and tokens[0]["token"].count(".") == 2
    expect(number).to_have_value("01595 1234")
    expect(number).to_be_focused()


def test_a_socket_the_server_refuses_sends_the_page_to_the_login_page(open_dialer, server):
    page = open_dialer()
    expect(page.locator(".shell")).to_have_attribute("data-realtime", "connected")
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    # A new secret key: the page's session cookie no longer holds, so the reconnecting socket is refused.
    server.files.environ["SHETPHONE_SECRET_KEY"] = "another-secret-key-for-this-test"
    server.process = start_server(server.files, port=port).process
    expect(page).to_have_url(re.compile(r"/login\?next="), timeout=20000)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
