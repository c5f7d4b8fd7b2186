"""What the browser tests share: chromium's settings, logging in, screenshots, the fake Device's log.

The Voice SDK's Device is replaced, in the page only, by tests/browser/fake_device.js.
"""

from __future__ import annotations

import re
from pathlib import Path

from conftest import PASSWORDS, ROOT, LiveServer, csrf_token_from, make_team_files, start_server  # noqa: F401
from playwright.sync_api import Browser, BrowserContext, Page, expect

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream",
]
FAKE_DEVICE = Path(__file__).with_name("fake_device.js")
MANIFEST = ROOT / "static" / "dist" / ".vite" / "manifest.json"
SCREENSHOTS = ROOT / "test-output" / "screenshots"
PHONE = {"width": 360, "height": 740}
DESKTOP = {"width": 1280, "height": 860}

# Records what the Content-Security-Policy blocked, from before the page's first script.
CSP_WATCH = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (event) => {
  window.__cspViolations.push(event.violatedDirective + ' ' + (event.blockedURI || 'inline'));
});
"""

class PageProblems:
    """Console errors, page errors and CSP violations seen while a test ran."""

    def __init__(self, page: Page):
        self.console: list[str] = []
        self.errors: list[str] = []
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.errors.append(str(error)))

    def _on_console(self, message) -> None:
        if message.type == "error" or "Content Security Policy" in message.text:
            self.console.append(message.text)

    def csp(self, page: Page) -> list[str]:
        in_page = page.evaluate("window.__cspViolations || []") if not page.is_closed() else []
        return in_page + [text for text in self.console if "Content Security Policy" in text]

def new_context(browser: Browser, server: LiveServer, *, fake_device: bool = True,
                viewport: dict | None = None) -> BrowserContext:
    context = browser.new_context(base_url=server.url, viewport=viewport or DESKTOP)
    context.grant_permissions(["microphone", "notifications"], origin=server.url)
    context.add_init_script(CSP_WATCH)
    if fake_device:
        context.add_init_script(path=str(FAKE_DEVICE))
    return context

def log_in(context: BrowserContext, server: LiveServer, name: str = "alice") -> None:
    """Log in through the form's POST, without the UI (the login tests use the UI)."""
    form = context.request.get(server.url + "/login")
    response = context.request.post(
        server.url + "/login",
        form={"username": name, "password": PASSWORDS[name], "csrf_token": csrf_token_from(form.text())},
        max_redirects=0,
    )
    assert response.status == 302, response.text()

def start_phone(page: Page) -> None:
    page.get_by_role("button", name="Start").click()
    expect(page.get_by_test_id("phone-state")).to_have_text("Ready")

def screenshot(page: Page, name: str) -> None:
    """Save the page at phone and at desktop size under test-output/screenshots/."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    original = page.viewport_size
    safe = re.sub(r"[^a-z0-9-]+", "-", name.lower())
    for label, size in (("phone", PHONE), ("desktop", DESKTOP)):
        page.set_viewport_size(size)
        page.screenshot(path=str(SCREENSHOTS / f"{safe}-{label}.png"), full_page=True)
    if original:
        page.set_viewport_size(original)

def fake_log(page: Page, what: str) -> list:
    return page.evaluate("(what) => window.__fakeDevice.entries(what)", what)
