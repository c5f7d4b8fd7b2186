"""The recent calls panel against the real server: live missed calls and their badge,
voicemail played from the Twilio stand-in, redialling, directions and aliases.
"""

from __future__ import annotations

import re
import subprocess
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect
from twilio_standin import TwilioStandIn

from browser.browser_helpers import (
    DESKTOP,
    PHONE,
    SCREENSHOTS,
    answered_call,
    fake_log,
    make_team_files,
    ring_unanswered,
    screenshot,
    start_phone,
    start_server,
)
from shetphone.store import Store

pytestmark = pytest.mark.browser

TEAM_NUMBER = "+441595000001"  # rings alice and bob
CAROL_NUMBER = "+441595000004"  # rings carol only: her list holds only what a test puts there
MUM = "+441595123456"
DAD = "+12015550123"
RECORDING_SID = "RE" + "c4" * 16


def spoken_message(tmp_path) -> bytes:
    """Three seconds of real audio (espeak-ng's voice), the kind of bytes a voicemail holds."""
    wav = tmp_path / "voicemail.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "Hello, this is a test message. Please call me back soon."],
                   check=True, capture_output=True)
    return wav.read_bytes()


def seed_older_calls(database: str) -> None:
    """Calls from yesterday and last week, written before the server starts, so dates show as dates."""
    now = datetime.now(UTC)
    # Yesterday at noon by this machine's clock, which the browser shares: "Yesterday" at any hour of the run.
    yesterday_noon = (datetime.now().astimezone() - timedelta(days=1)).replace(hour=12, minute=0, second=0)
    store = Store(database)
    store.calls.import_calls([
        {"call_sid": "CA" + "a1" * 16, "direction": "inbound", "number": TEAM_NUMBER, "from": DAD,
         "to": TEAM_NUMBER, "started_at": yesterday_noon, "status": "completed",
         "answered": True, "duration": 754},
        {"call_sid": "CA" + "a2" * 16, "direction": "outbound", "number": TEAM_NUMBER, "from": TEAM_NUMBER,
         "to": "+447700900555", "client": "alice", "started_at": now - timedelta(days=6), "status": "busy"},
    ])
    store.close()


@pytest.fixture(scope="module")
def media_host():
    host = TwilioStandIn()
    yield host
    host.stop()


@pytest.fixture(scope="module")
def server(tmp_path_factory, media_host):
    """This module's server (it replaces conftest's): its Twilio media host is the fake above."""
    root = tmp_path_factory.mktemp("team")
    files = make_team_files(root, extra=f"twilio_api_base = {media_host.url}")
    media_host.accept(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"])
    media_host.add_recording(RECORDING_SID, spoken_message(root))
    seed_older_calls(f"sqlite:///{root / 'shetphone.sqlite3'}")
    live = start_server(files)
    yield live
    live.stop()


def panel_of(page):
    return page.locator("section.recent-calls")


def row_of(page, call_sid: str):
    return page.locator(f'li.log-row[data-call-sid="{call_sid}"]')


def shoot_panel(page, name: str) -> None:
    """The panel alone, at phone and at desktop size, under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        panel_of(page).screenshot(path=str(SCREENSHOTS / f"{name}-{label}.png"))


def test_a_missed_call_appears_live_with_a_badge_that_clears_once_seen(open_dialer, server):
    page = open_dialer(name="carol", viewport=PHONE)  # on a phone the panel starts below the fold
    panel = panel_of(page)
    expect(panel).to_contain_text("No calls yet")
    expect(page.locator(".shell")).to_have_attribute("data-realtime", "connected")
    assert not panel.is_visible() or panel.bounding_box()["y"] > PHONE["height"]

    missed = "CA" + "d1" * 16
    ring_unanswered(server, missed, "+447700900123", CAROL_NUMBER, "carol")

    row = row_of(page, missed)
    expect(row.get_by_test_id("call-kind")).to_have_attribute("data-kind", "missed")
    expect(row).to_contain_text("Missed")
    expect(row.get_by_test_id("call-who")).to_have_text("+44 7700 900123")
    expect(row.get_by_role("button")).to_have_accessible_name(
        re.compile(r"^Call back: \+44 7700 900123, New, Missed, Just now$"))
    badge = page.get_by_test_id("missed-badge")
    expect(badge).to_have_text("1 new missed")
    expect(page).to_have_title("(1) Shetphone")
    page.mouse.move(180, 200)  # active on the page, but the list is still out of sight: not seen
    expect(badge).to_have_text("1 new missed")

    panel.scroll_into_view_if_needed()  # the person scrolls down to the list
    expect(badge).to_have_count(0)
    expect(page).to_have_title("Shetphone")
    expect(row).not_to_have_class(re.compile(r"\bunseen\b"))

    page.reload()  # what was seen stays seen
    expect(row_of(page, missed)).to_be_visible()
    expect(page.get_by_test_id("missed-badge")).to_have_count(0)
    expect(page).to_have_title("Shetphone")

    # A second one while the page is open: the badge comes back; "Mark seen" clears it by keyboard too.
    second = "CA" + "d2" * 16
    page.evaluate("() => window.scrollTo(0, 0)")
    ring_unanswered(server, second, MUM, CAROL_NUMBER, "carol")
    expect(row_of(page, second).get_by_test_id("call-who")).to_have_text("Mum")
    expect(page.get_by_test_id("missed-badge")).to_have_text("1 new missed")
    mark_seen = page.get_by_role("button", name="Mark seen")
    mark_seen.focus()
    page.keyboard.press("Enter")
    expect(page.get_by_test_id("missed-badge")).to_have_count(0)

    # Another browser has seen nothing yet: both are new there (a picture of the badge).
    elsewhere = open_dialer(name="carol", viewport=PHONE)
    expect(elsewhere.get_by_test_id("missed-badge")).to_have_text("2 new missed")
    screenshot(elsewhere, "recent-calls-missed")


def test_a_voicemail_appears_and_plays_from_twilios_media_host(open_dialer, server, media_host):
    page = open_dialer()
    expect(page.locator(".shell")).to_have_attribute("data-realtime", "connected")
    root = "CA" + "e1" * 16
    ring_unanswered(server, root, "+447700900999", TEAM_NUMBER, "alice")
    recorded = server.post_signed("/voice/recording", {
        "CallSid": root, "RecordingSid": RECORDING_SID, "RecordingStatus": "completed", "RecordingDuration": "3",
        "RecordingUrl": f"https://api.twilio.com/2010-04-01/Accounts/AC/Recordings/{RECORDING_SID}"})
    assert recorded.status_code == 204

    row = row_of(page, root)
    play = row.get_by_role("button", name="Play the voicemail from +44 7700 900999")
    expect(play).to_be_visible()
    audio = row.get_by_test_id("voicemail-audio")
    expect(audio).to_have_attribute("src", f"/voicemail/{RECORDING_SID}")
    media_host.requests_seen.clear()
    play.click()

    # It really plays: the browser decoded the bytes and the clock moves.
    page.wait_for_function("(sid) => { const audio = document.querySelector(`li[data-call-sid='${sid}'] audio`);"
                           " return audio.played.length > 0 && audio.currentTime > 0.2 }", arg=root)
    state = audio.evaluate("(e) => ({played: e.played.length, time: e.currentTime, ready: e.readyState, "
                           "error: e.error && e.error.code})")
    assert state["played"] > 0 and state["time"] > 0.2 and state["ready"] >= 2 and state["error"] is None
    expect(row.get_by_role("button", name="Pause the voicemail from +44 7700 900999")).to_be_visible()
    account = server.files.environ["TWILIO_ACCOUNT_SID"]
    assert (f"/2010-04-01/Accounts/{account}/Recordings/{RECORDING_SID}.mp3", media_host.expected_auth) \
        in [(seen.path, seen.authorization) for seen in media_host.requests_seen]
    shoot_panel(page, "recent-calls-voicemail-playing")
    row.get_by_role("button", name="Pause the voicemail from +44 7700 900999").focus()
    page.keyboard.press("Enter")  # the player works from the keyboard
    expect(row.get_by_role("button", name="Play the voicemail from +44 7700 900999")).to_be_visible()
    assert audio.evaluate("(element) => element.paused") is True


def test_clicking_an_outgoing_call_calls_the_number_again(open_dialer, server):
    page = open_dialer()
    start_phone(page)
    root = "CA" + "f1" * 16
    answered_call(server, root, caller="client:alice", called=DAD, seconds=65, caller_id="+15005550006")
    row = row_of(page, root)
    expect(row.get_by_test_id("call-kind")).to_have_attribute("data-kind", "outbound")
    expect(row.locator(".log-duration")).to_have_text("1:05")
    row.get_by_role("button", name=re.compile(r"^Call again: Dad, .*1:05 — outgoing call$")).click()
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    assert fake_log(page, "device.connect")[-1]["params"]["To"] == DAD
    expect(page.get_by_role("status")).to_have_text("Calling Dad…")


def test_directions_and_aliases_and_enter_calls_back(open_dialer, server):
    page = open_dialer()
    start_phone(page)
    incoming, outgoing = "CA" + "b1" * 16, "CA" + "b2" * 16
    answered_call(server, incoming, caller=MUM, called=TEAM_NUMBER, seconds=42)
    answered_call(server, outgoing, caller="client:alice", called="+441595765432", seconds=3725,
                  caller_id=TEAM_NUMBER)

    mum = row_of(page, incoming)
    expect(mum.get_by_test_id("call-kind")).to_have_attribute("data-kind", "inbound")
    expect(mum.get_by_test_id("call-kind")).to_have_text("Incoming call")
    expect(mum.get_by_test_id("call-who")).to_have_text("Mum")  # the preset's alias ...
    expect(mum.locator(".log-number")).to_have_text("+44 1595 123456")  # ... with its number beside
    expect(mum.locator(".log-duration")).to_have_text("0:42")
    expect(mum.locator("time")).to_have_text("Just now")
    expect(mum.locator("time")).to_have_attribute("title", re.compile(r"\d{4}"))  # the full date on hover

    stranger = row_of(page, outgoing)
    expect(stranger.get_by_test_id("call-kind")).to_have_text("Outgoing call")
    expect(stranger.get_by_test_id("call-who")).to_have_text("+44 1595 765432")
    expect(stranger.locator(".log-number")).to_have_count(0)
    expect(stranger.locator(".log-duration")).to_have_text("1:02:05")

    # The calls from before the server started: dates, not "ago".
    yesterday = row_of(page, "CA" + "a1" * 16)
    expect(yesterday.locator("time")).to_have_text(re.compile(r"^Yesterday "))
    expect(yesterday.get_by_test_id("call-who")).to_have_text("Dad")
    expect(row_of(page, "CA" + "a2" * 16)).to_contain_text("Busy")

    assert page.evaluate("document.documentElement.scrollWidth") <= DESKTOP["width"]
    shoot_panel(page, "recent-calls")
    page.set_viewport_size(PHONE)
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]

    mum.get_by_role("button").focus()
    page.keyboard.press("Enter")
    expect(page.get_by_role("button", name="Hang up")).to_be_visible()
    assert fake_log(page, "device.connect")[-1]["params"]["To"] == MUM


def test_a_failed_refresh_says_so_and_try_again_recovers(open_dialer, server):
    page = open_dialer(name="bob")
    panel = panel_of(page)
    expect(panel.locator(".log-row").first).to_be_visible()
    page.route("**/calls?*", lambda route: route.fulfill(status=502, body="{}"))
    root = "CA" + "f7" * 16
    ring_unanswered(server, root, DAD, TEAM_NUMBER, "bob")
    expect(panel).to_contain_text("Could not refresh the list; it may be out of date.")
    expect(row_of(page, root)).to_have_count(0)
    page.unroute("**/calls?*")
    panel.get_by_role("button", name="Try again").click()
    expect(row_of(page, root).get_by_test_id("call-who")).to_have_text("Dad")
    expect(panel).not_to_contain_text("Could not refresh")


def test_calls_missed_while_the_connection_was_down_are_listed_on_reconnect(open_dialer, server):
    """No event comes for a call that ended while the page was disconnected: reconnecting refetches the list."""
    page = open_dialer(name="carol")
    shell = page.locator(".shell")
    expect(shell).to_have_attribute("data-realtime", "connected")
    port = int(server.url.rsplit(":", 1)[1])
    server.stop()
    expect(page.get_by_role("alert")).to_contain_text("Reconnecting")
    while_away = "CA" + "9a" * 16
    store = Store(f"sqlite:///{server.files.root / 'shetphone.sqlite3'}")
    store.calls.import_calls([{"call_sid": while_away, "direction": "inbound", "number": CAROL_NUMBER, "from": DAD,
                       "to": CAROL_NUMBER, "started_at": datetime.now(UTC), "status": "no-answer"}])
    store.close()
    server.process = start_server(server.files, port=port).process  # same secret key: the session holds
    expect(shell).to_have_attribute("data-realtime", "reconnected", timeout=20000)
    expect(row_of(page, while_away).get_by_test_id("call-kind")).to_have_attribute("data-kind", "missed")
    expect(row_of(page, while_away)).to_have_class(re.compile(r"\bunseen\b"))  # counted in the badge
