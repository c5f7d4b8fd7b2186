"""A stand-in for Twilio's REST API (``twilio_api_base``), where recordings are fetched, for the voicemail tests.

It serves ``audio`` at a recording's address to the account's Basic auth only,
labelled as Twilio labels MP3, with Range support, and records every request.
"""

from __future__ import annotations

import base64
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RECORDING_PATH = re.compile(r"^/2010-04-01/Accounts/(AC[0-9a-f]+)/Recordings/RE[0-9a-f]{32}\.mp3$")


class TwilioMediaHost:
    def __init__(self, audio: bytes):
        self.audio = audio
        self.account_sid = ""
        self.expected_auth = ""
        self.requests_seen: list[tuple[str, str, str | None]] = []  # (path, Authorization, Range)
        handler = type("Handler", (_Handler,), {"host": self})
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"

    def accept(self, account_sid: str, auth_token: str) -> None:
        """Serve this account, as Twilio would for its SID and auth token."""
        self.account_sid = account_sid
        self.expected_auth = "Basic " + base64.b64encode(f"{account_sid}:{auth_token}".encode()).decode()

    def stop(self) -> None:
        self._server.shutdown()


class _Handler(BaseHTTPRequestHandler):
    host: TwilioMediaHost

    def do_GET(self):
        host = self.host
        host.requests_seen.append((self.path, self.headers.get("Authorization", ""), self.headers.get("Range")))
        if self.headers.get("Authorization") != host.expected_auth:
            self._empty(401)
            return
        match = RECORDING_PATH.match(self.path)
        if not match or match.group(1) != host.account_sid:
            self._empty(404)
            return
        audio = host.audio
        body, status, first, last = audio, 200, 0, len(audio) - 1
        if self.headers.get("Range", "").startswith("bytes="):
            start, _, end = self.headers["Range"][6:].partition("-")
            first, last = int(start), min(int(end) if end else last, last)
            body, status = audio[first : last + 1], 206
        self.send_response(status)
        self.send_header("Content-Type", "audio/mpeg")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        if status == 206:
            self.send_header("Content-Range", f"bytes {first}-{last}/{len(audio)}")
        self.end_headers()
        self.wfile.write(body)

    def _empty(self, status: int) -> None:
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass
