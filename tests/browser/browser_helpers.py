"""What the browser tests share: chromium's settings, logging in, screenshots, the fake Device's log.

The Voice SDK's Device is replaced, in the page only, by tests/browser/fake_device.js.
"""

from __future__ import annotations

import http.client
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import socketio
from conftest import PASSWORDS, ROOT, LiveServer, csrf_token_from, live_login, make_team_files, start_server  # noqa: F401
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
                viewport: dict | None = None, origin: str | None = None, **options) -> BrowserContext:
    """A fresh context for ``server`` (or for ``origin``, a proxy in front of it); ``options`` go to Playwright.

    The page's service worker is blocked unless ``service_workers="allow"`` (test_installable, which tests
    it): a request made while the worker claims the page can slip past ``page.route``, and CI twice saw a
    routed failure reach the real server instead.
    """
    origin = origin or server.url
    options.setdefault("service_workers", "block")
    context = browser.new_context(base_url=origin, viewport=viewport or DESKTOP, **options)
    context.grant_permissions(["microphone", "notifications"], origin=origin)
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
    # The server has counted this page's phone once the Team panel says the person is no longer offline:
    # a call posted from here on rings it.
    expect(page.get_by_test_id("team-me")).not_to_have_attribute("data-state", "offline")

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


def ring_unanswered(server, root_sid: str, caller: str, number: str, client: str) -> None:
    """An incoming call nobody answers, as Twilio reports it: /voice, the ringing leg, then the <Dial>'s outcome;
    or, when nobody's phone is started, /voice's voicemail at once (SPEC §7)."""
    inbound = {"CallSid": root_sid, "From": caller, "To": number}
    answer = server.post_signed("/voice", inbound).text
    if "<Dial" not in answer:
        assert "<Record" in answer  # straight to voicemail: no leg rings, the call is missed already
        return
    leg = {"CallSid": "CB" + root_sid[2:], "ParentCallSid": root_sid, "From": caller, "To": f"client:{client}"}
    for sequence, status in enumerate(["ringing", "no-answer"]):
        answer = server.post_signed("/voice/status", {**leg, "CallStatus": status, "SequenceNumber": str(sequence)})
        assert answer.status_code == 204
    outcome = server.post_signed("/voice/dial-complete", {**inbound, "DialCallStatus": "no-answer"})
    assert "<Record" in outcome.text


def answered_call(server, root_sid: str, *, caller: str, called: str, seconds: int, caller_id: str = "") -> None:
    """A call that was answered and lasted ``seconds``: outgoing when ``caller`` is a browser client."""
    voice = {"CallSid": root_sid, "From": caller, "To": called, **({"CallerId": caller_id} if caller_id else {})}
    assert "<Dial" in server.post_signed("/voice", voice).text
    dialled = called if caller_id else "client:alice"  # outgoing: the number; incoming: a browser
    leg = {"CallSid": "CB" + root_sid[2:], "ParentCallSid": root_sid, "From": caller_id or caller, "To": dialled}
    for sequence, status in enumerate(["ringing", "in-progress", "completed"]):
        server.post_signed("/voice/status", {**leg, "CallStatus": status, "SequenceNumber": str(sequence),
                                             "CallDuration": str(seconds)})


class Teammate:
    """A teammate's page (bob's by default), played by a Socket.IO client: it can start and stop its phone."""

    def __init__(self, server, name: str = "bob"):
        self.client = socketio.Client(http_session=live_login(server, name), reconnection=False)
        self.client.connect(server.url, transports=["websocket"], wait_timeout=10)

    def phone(self, ready: bool) -> None:
        self.client.emit("phone", {"ready": ready})

    def close(self) -> None:
        if self.client.connected:
            threading.Thread(target=self.client.disconnect, daemon=True).start()


# Not passed on by a proxy (RFC 9110 7.6.1), and the length, which the proxy sets itself.
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
              "content-length"}


class PrefixProxy:
    """nginx.conf.example's path-prefix form, in a thread: ``PREFIX/x`` reaches the server as ``/x`` with
    ``X-Forwarded-Prefix`` (the server needs ``proxy_hops = 1``).

    It records the path of every request that reached it and answers 503 for the path
    prefixes in ``stopped``, as a stopped upstream would. Socket.IO works by long-polling
    (a websocket upgrade is refused, and the client stays on polling).
    """

    def __init__(self, upstream: str, prefix: str = "/shetphone"):
        self.prefix = prefix
        self.stopped: set[str] = set()
        self.paths: list[str] = []
        self._upstream = urlsplit(upstream)
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self._httpd.server_address[1]}"
        self.url = self.origin + prefix
        threading.Thread(target=self._httpd.serve_forever, daemon=True).start()

    def reached(self, path_prefix: str) -> list[str]:
        """The paths (without the prefix) of the requests that reached the proxy, starting with ``path_prefix``."""
        return [path for path in list(self.paths) if path.startswith(path_prefix)]

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def _forward(self) -> None:
                if not self.path.startswith(proxy.prefix + "/"):
                    return self._answer(404, b"outside the prefix")
                path = self.path[len(proxy.prefix):]
                proxy.paths.append(path)
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                if any(path.startswith(stopped) for stopped in proxy.stopped):
                    return self._answer(503, b"stopped")
                if self.headers.get("Upgrade"):
                    return self._answer(400, b"no websocket through this proxy")
                headers = {name: value for name, value in self.headers.items() if name.lower() not in HOP_BY_HOP}
                headers.update({"X-Forwarded-Prefix": proxy.prefix, "X-Forwarded-For": self.client_address[0],
                                "X-Forwarded-Proto": "http", "X-Forwarded-Host": self.headers.get("Host", "")})
                upstream = http.client.HTTPConnection(proxy._upstream.hostname, proxy._upstream.port, timeout=60)
                try:
                    upstream.request(self.command, path, body=body, headers=headers)
                    response = upstream.getresponse()
                    status, received, content = response.status, response.getheaders(), response.read()
                except (OSError, http.client.HTTPException):
                    return self._answer(502, b"the server did not answer")  # as nginx says it
                finally:
                    upstream.close()
                self.send_response(status)
                for name, value in received:
                    if name.lower() not in HOP_BY_HOP:
                        self.send_header(name, value)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(content)

            def handle_one_request(self) -> None:
                try:
                    super().handle_one_request()
                except OSError:  # the browser went away (a page closed mid-poll)
                    self.close_connection = True

            def _answer(self, status: int, text: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(text)))
                self.end_headers()
                self.wfile.write(text)

            do_GET = do_POST = do_HEAD = _forward

        return Handler


def png_size(data: bytes) -> tuple[int, int]:
    """Width and height from a PNG's IHDR chunk (no image library needed)."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
