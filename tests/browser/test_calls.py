"""Calls in the page: the status line following Twilio's callbacks, incoming calls, DTMF, mute, session end."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from browser.browser_helpers import csrf_token_from, fake_log, screenshot, start_phone

pytestmark = pytest.mark.browser

MUM = "+441595123456"
TEAM_NUMBER = "+441595000001"


def dial_mum(page):
    start_phone(page)
    page.get_by_role("button", name="Call Mum, +44 1595 123456").click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()


def test_an_outgoing_call_follows_twilios_status_callbacks(open_dialer, server):
    page = open_dialer()
    dial_mum(page)
    status = page.get_by_role("status")
    expect(status).to_have_text("Calling Mum…")

    root, child = "CA" + "1" * 32, "CA" + "2" * 32
    page.evaluate("(sid) => window.__fakeDevice.lastCall.answered(sid)", root)
    # Twilio asks /voice what to do (so the call log knows the root call), then reports the dialled leg.
    voice = server.post_signed("/voice", {"CallSid": root, "From": "client:alice", "To": MUM, "CallerId": TEAM_NUMBER})
    assert voice.status_code == 200 and "<Dial" in voice.text
    leg = {"CallSid": child, "ParentCallSid": root, "From": TEAM_NUMBER, "To": MUM, "Direction": "outbound-dial"}
    for sequence, (call_status, words) in enumerate([
        ("ringing", "Ringing Mum…"),
        ("in-progress", "Connected to Mum"),
    ]):
        callback = {**leg, "CallStatus": call_status, "SequenceNumber": str(sequence)}
        answer = server.post_signed("/voice/status", callback)
        assert answer.status_code == 204
        expect(status).to_have_text(words)
    expect(page.get_by_test_id("call-timer")).to_contain_text("0:0")
    screenshot(page, "call-in-progress")
    server.post_signed("/voice/status", {**leg, "CallStatus": "completed", "SequenceNumber": "2", "CallDuration": "4"})
    expect(status).to_have_text("Call ended")

    page.get_by_role("button", name="Hang up").click()
    assert len(fake_log(page, "call.disconnect")) == 1
    expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
    expect(status).to_contain_text("Call ended")


def test_a_call_status_for_another_call_leaves_the_status_line_alone(open_dialer, server):
    page = open_dialer()
    dial_mum(page)
    page.evaluate("(sid) => window.__fakeDevice.lastCall.answered(sid)", "CA" + "3" * 32)
    other_root = "CA" + "4" * 32
    server.post_signed("/voice", {"CallSid": other_root, "From": "client:bob", "To": "+441595765432"})
    server.post_signed("/voice/status", {"CallSid": "CA" + "5" * 32, "ParentCallSid": other_root, "CallStatus": "busy",
                                         "SequenceNumber": "0", "From": TEAM_NUMBER, "To": "+441595765432"})
    server.post_signed("/voice", {"CallSid": "CA" + "3" * 32, "From": "client:alice", "To": MUM})
    server.post_signed("/voice/status", {"CallSid": "CA" + "6" * 32, "ParentCallSid": "CA" + "3" * 32, "To": MUM,
                                         "CallStatus": "ringing", "SequenceNumber": "0", "From": TEAM_NUMBER})
    expect(page.get_by_role("status")).to_have_text("Ringing Mum…")  # only its own call, never bob's busy


def test_dtmf_mute_levels_and_quality_warnings_during_a_call(open_dialer):
    page = open_dialer()
    dial_mum(page)
    page.evaluate("() => window.__fakeDevice.lastCall.answered('CA' + '7'.repeat(32))")
    page.get_by_role("button", name="5 JKL").click()
    page.locator("body").press("#")
    page.keyboard.type("12")
    expect(page.get_by_test_id("digits-sent")).to_have_text("5#12")
    assert [entry["digits"] for entry in fake_log(page, "call.sendDigits")] == ["5", "#", "1", "2"]

    page.keyboard.press("m")
    mute = page.get_by_role("button", name="Unmute")
    expect(mute).to_have_attribute("aria-pressed", "true")
    expect(page.get_by_test_id("call-timer")).to_contain_text("Muted")
    mute.click()
    expect(page.get_by_role("button", name="Mute", exact=True)).to_have_attribute("aria-pressed", "false")
    assert [entry["muted"] for entry in fake_log(page, "call.mute")] == [True, False]

    page.evaluate("() => window.__fakeDevice.lastCall.emit('volume', 0.5, 0.25)")
    expect(page.locator("#input-level")).to_have_js_property("value", 0.5)
    expect(page.locator("#output-level")).to_have_js_property("value", 0.25)
    page.evaluate("() => window.__fakeDevice.lastCall.emit('warning', 'high-jitter', {})")
    expect(page.get_by_test_id("call-warnings")).to_have_text("Choppy audio")
    screenshot(page, "call-warning")
    page.evaluate("() => window.__fakeDevice.lastCall.emit('warning-cleared', 'high-jitter')")
    expect(page.get_by_test_id("call-warnings")).to_have_count(0)

    page.evaluate("() => window.__fakeDevice.lastCall.emit('reconnecting', {})")
    expect(page.get_by_role("alert")).to_contain_text("Reconnecting")
    page.evaluate("() => window.__fakeDevice.lastCall.emit('reconnected')")
    expect(page.get_by_role("alert")).to_contain_text("reconnected")

    page.evaluate("() => window.__fakeDevice.lastCall.hungUpRemotely()")
    expect(page.get_by_role("status")).to_contain_text("Call ended after 0:0")


def test_an_incoming_call_rings_with_the_preset_name_and_is_accepted(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.evaluate("(from) => window.__fakeDevice.incoming({From: from, To: 'client:alice'})", MUM)
    ringing = page.get_by_role("alert")
    expect(ringing).to_contain_text("Incoming call")
    expect(page.get_by_test_id("incoming-caller")).to_have_text("Mum")
    expect(page.get_by_role("button", name="Accept")).to_be_focused()  # Enter or Space answers
    screenshot(page, "incoming-call")
    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("status")).to_have_text("Connected to Mum")
    expect(page.get_by_test_id("incoming-caller")).to_have_count(0)
    assert len(fake_log(page, "call.accept")) == 1
    page.get_by_role("button", name="Hang up").click()
    expect(page.get_by_role("status")).to_contain_text("Call ended")


def test_an_incoming_call_from_an_unknown_number_is_rejected(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.evaluate("() => window.__fakeDevice.incoming({From: '+447700900123', To: 'client:alice'})")
    expect(page.get_by_test_id("incoming-caller")).to_have_text("+44 7700 900123")
    page.get_by_role("button", name="Reject").click()
    expect(page.get_by_test_id("incoming-caller")).to_have_count(0)
    assert len(fake_log(page, "call.reject")) == 1 and fake_log(page, "call.accept") == []
    expect(page.get_by_role("status")).to_have_text("Rejected the call from +44 7700 900123")


def test_a_caller_who_hangs_up_first_leaves_a_missed_call(open_dialer):
    page = open_dialer()
    start_phone(page)
    page.evaluate("(from) => window.__fakeDevice.incoming({From: from})", MUM)
    expect(page.get_by_test_id("incoming-caller")).to_have_text("Mum")
    page.evaluate("() => window.__fakeDevice.lastCall.emit('cancel')")
    expect(page.get_by_test_id("incoming-caller")).to_have_count(0)
    expect(page.get_by_role("status")).to_have_text("Missed call from Mum")


def test_the_token_is_refreshed_before_it_expires(open_dialer):
    page = open_dialer()
    start_phone(page)
    with page.expect_response("**/token") as fetched:
        page.evaluate("() => window.__fakeDevice.device.emit('tokenWillExpire')")
    page.wait_for_function("() => window.__fakeDevice.entries('device.updateToken').length === 1")
    assert fake_log(page, "device.updateToken") == [{"token": fetched.value.json()["token"]}]


def test_audio_devices_can_be_chosen(open_dialer):
    page = open_dialer()
    settings = page.get_by_role("region", name="Audio and links")
    expect(settings).to_contain_text("Start the phone")
    start_phone(page)
    settings.get_by_label("Microphone").select_option("mic-2")
    settings.get_by_label("Speaker").select_option("speaker-2")
    settings.get_by_label("Ringtone").select_option("speaker-2")
    page.wait_for_function("() => window.__fakeDevice.entries('audio.ringtone').length === 1")
    assert fake_log(page, "audio.input") == [{"id": "mic-2"}]
    assert fake_log(page, "audio.speaker") == [{"ids": ["speaker-2"]}]
    expect(settings.get_by_label("Speaker")).to_have_value("speaker-2")


def test_session_ended_sends_the_page_to_the_login_page(open_dialer, server):
    page = open_dialer(name="bob")
    start_phone(page)
    expect(page.locator(".shell")).to_have_attribute("data-realtime", "connected")
    # Logging out elsewhere with the same session ends this page's session too.
    token = csrf_token_from(page.content())
    response = page.context.request.post(server.url + "/logout", form={"csrf_token": token}, max_redirects=0)
    assert response.status == 302
    expect(page).to_have_url(re.compile(r"/login(\?|$)"), timeout=15000)
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()


def test_a_new_voicemail_is_announced(open_dialer, server):
    page = open_dialer()
    expect(page.locator(".shell")).to_have_attribute("data-realtime", "connected")
    call_sid = "CA" + "8" * 32
    server.post_signed("/voice", {"CallSid": call_sid, "From": MUM, "To": TEAM_NUMBER})
    recorded = server.post_signed("/voice/recording", {
        "CallSid": call_sid, "RecordingSid": "RE" + "8" * 32, "RecordingStatus": "completed",
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/RE" + "8" * 32,
        "RecordingDuration": "7",
    })
    assert recorded.status_code == 204
    expect(page.get_by_role("alert")).to_have_text("New voicemail from Mum")


def test_accepting_a_second_call_hangs_up_the_first_and_its_late_events_change_nothing(open_dialer):
    page = open_dialer()
    dial_mum(page)
    page.evaluate("() => window.__fakeDevice.lastCall.answered('CA' + '9'.repeat(32))")
    page.evaluate("() => window.__fakeDevice.incoming({From: '+12015550123'})")
    expect(page.get_by_test_id("incoming-caller")).to_have_text("Dad")
    page.get_by_role("button", name="Accept").click()
    expect(page.get_by_role("status")).to_have_text("Connected to Dad")
    assert fake_log(page, "call.disconnect") == [{"call": 0}]  # the first call, Mum's
    # The real SDK reports the first call's end later, asynchronously: it must not end Dad's.
    page.evaluate("() => window.__fakeDevice.calls[0].emit('disconnect', window.__fakeDevice.calls[0])")
    expect(page.get_by_role("status")).to_have_text("Connected to Dad")
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
