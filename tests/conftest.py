"""Shared fixtures: a team configuration on disk, the app, signed Twilio requests, a live server."""

from __future__ import annotations

import contextlib
import functools
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from itertools import count
from pathlib import Path

import pytest
import requests
from passlib.hash import bcrypt
from twilio.request_validator import RequestValidator

ROOT = Path(__file__).resolve().parent.parent
PUBLIC_URL = "https://phone.example.test"
PASSWORDS = {"alice": "alice-secret-1", "bob": "bob-secret-22", "carol": "carol-secret-333"}

INI = """\
[uwsgi]
module = app:app

[shetphone]
public_url = {public_url}
htpasswd = .htpasswd
presets = presets.csv
database = shetphone.sqlite3
ring_timeout = 20
{extra}
[shetphone:numbers]
+441595000001 = alice bob
+441595000002 = discord:123456789012345678
+441595000003 = echo
+441595000004 = carol

[shetphone:clients]
alice = +441595000001 +15005550006
bob = +441595000001
carol = +441595000004

[shetphone:bridge]
listen = 127.0.0.1:5001
text_channel = 123456789012345679
"""

PRESETS = """\
alias,country code,number
Mum,44,1595 123456
Dad,1,201 555 0123
"""


@functools.cache
def htpasswd_line(name: str, password: str) -> str:
    # Few rounds: the tests log in often; the format is what production writes. The same line for
    # the same password: a rewritten file changes only whom it says (a new hash is a new password).
    return f"{name}:{bcrypt.using(rounds=4, ident='2y').hash(password)}\n"


def twilio_environment() -> dict[str, str]:
    return {
        "TWILIO_ACCOUNT_SID": "AC" + secrets.token_hex(16),
        "TWILIO_AUTH_TOKEN": secrets.token_hex(16),
        "TWILIO_APP_SID": "AP" + secrets.token_hex(16),
        "TWILIO_API_KEY": "SK" + secrets.token_hex(16),
        "TWILIO_API_SECRET": secrets.token_hex(16),
    }


@dataclass
class TeamFiles:
    """A team's configuration written to a temporary directory."""

    root: Path
    environ: dict[str, str] = field(default_factory=dict)
    public_url: str = PUBLIC_URL
    extra_ini: str = ""
    ini_template: str = INI  # with {public_url} and {extra}

    @property
    def ini(self) -> Path:
        return self.root / "shetphone.ini"

    @property
    def htpasswd(self) -> Path:
        return self.root / ".htpasswd"

    @property
    def presets(self) -> Path:
        return self.root / "presets.csv"

    @property
    def auth_token(self) -> str:
        return self.environ["TWILIO_AUTH_TOKEN"]

    def write_ini(self, extra: str | None = None, public_url: str | None = None) -> None:
        self.extra_ini = self.extra_ini if extra is None else extra
        self.public_url = public_url or self.public_url
        self.ini.write_text(self.ini_template.format(public_url=self.public_url, extra=self.extra_ini),
                            encoding="utf-8")

    def write_users(self, passwords: dict[str, str]) -> None:
        self.htpasswd.write_text("".join(htpasswd_line(n, p) for n, p in passwords.items()), encoding="utf-8")


def settled(watched):
    """A watched file's value once its edit has settled: a change is taken at the second of two checks."""
    watched.refresh()
    watched.refresh()
    return watched.current


def make_team_files(root: Path, extra: str = "", public_url: str = PUBLIC_URL) -> TeamFiles:
    files = TeamFiles(root=root)
    files.environ = {
        **twilio_environment(),
        "SHETPHONE_CONFIG": str(root / "shetphone.ini"),
        "SHETPHONE_SECRET_KEY": secrets.token_hex(16),
    }
    files.write_ini(extra, public_url)
    files.write_users(PASSWORDS)
    files.presets.write_text(PRESETS, encoding="utf-8")
    return files


@pytest.fixture
def team_files(tmp_path: Path) -> TeamFiles:
    return make_team_files(tmp_path)


@pytest.fixture
def settings(team_files: TeamFiles):
    from shetphone.settings import load_settings

    return load_settings(team_files.root, team_files.environ)


@pytest.fixture
def app(settings):
    from shetphone import create_app

    app = create_app(settings, async_mode="threading", overrides={"TESTING": True})
    yield app
    app.extensions["shetphone"].store.close()


@pytest.fixture
def app_with(team_files: TeamFiles) -> Iterator[Callable]:
    """Build an app of ``team_files`` with more ini lines, or another async mode: ``app_with("voicemail = no")``."""
    from shetphone import create_app
    from shetphone.settings import load_settings

    built = []

    def build(extra: str = "", async_mode: str = "threading"):
        team_files.write_ini(extra=extra + "\n")
        app = create_app(load_settings(team_files.root, team_files.environ), async_mode=async_mode,
                         overrides={"TESTING": True})
        built.append(app)
        return app

    yield build
    for app in built:
        app.extensions["shetphone"].store.close()


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token_from(html: str) -> str:
    marker = 'name="csrf_token"'
    start = html.index(marker)
    value_at = html.index('value="', start) + len('value="')
    return html[value_at : html.index('"', value_at)]


def login(client, name: str, password: str | None = None):
    page = client.get("/login")
    token = csrf_token_from(page.get_data(as_text=True))
    return client.post(
        "/login",
        data={"username": name, "password": password or PASSWORDS[name], "csrf_token": token},
    )


def signature_for(auth_token: str, url: str, params: dict[str, str]) -> str:
    return RequestValidator(auth_token).compute_signature(url, params)


def twilio_poster(client, auth_token: str) -> Callable:
    """POST to a Twilio route of ``client``'s app the way Twilio does: form fields signed with the auth token."""

    def post(path: str, params: dict[str, str], signature: str | None = None):
        url = PUBLIC_URL + path
        sig = signature if signature is not None else signature_for(auth_token, url, params)
        return client.post(path, data=params, headers={"X-Twilio-Signature": sig})

    return post


@pytest.fixture
def twilio_post(client, team_files: TeamFiles) -> Callable:
    """POST to a Twilio route the way Twilio does: form fields signed with the auth token."""
    return twilio_poster(client, team_files.auth_token)


def browser_with_phone(app, name: str, ready: bool = True):
    """A browser of ``name``'s on ``app``: logged in, connected over Socket.IO, and with ``ready`` its phone
    started (``phone {"ready": true}``, as the page sends when its Device registers). Its Socket.IO test client."""
    http = app.test_client()
    assert login(http, name).status_code == 302
    browser = app.extensions["socketio"].test_client(app, flask_test_client=http)
    assert browser.is_connected()
    if ready:
        browser.emit("phone", {"ready": True})
    return browser


@pytest.fixture
def phone_ready(app) -> Callable:
    """``phone_ready("alice")``: :func:`browser_with_phone` on the ``app`` fixture."""
    return lambda name: browser_with_phone(app, name)


@dataclass
class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers (a hung Redis)."""

    port: int
    accepted: list[socket.socket] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


@pytest.fixture
def silent_server() -> Iterator[SilentServer]:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    server = SilentServer(port=listener.getsockname()[1])

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:  # closed at the end of the test
                return
            server.accepted.append(connection)

    threading.Thread(target=accept, daemon=True).start()
    yield server
    with contextlib.suppress(OSError):
        listener.shutdown(socket.SHUT_RDWR)  # wakes the accept() above
    listener.close()
    for connection in server.accepted:
        connection.close()


@pytest.fixture
def refusing_url() -> str:
    """A redis:// URL whose port refuses connections (nothing listens there)."""
    return f"redis://127.0.0.1:{free_port()}/0"


# ------------------------------------------------------------------------ live server


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class LiveServer:
    url: str
    files: TeamFiles
    process: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def post_signed(self, path: str, params: dict[str, str], session: requests.Session | None = None):
        sig = signature_for(self.files.auth_token, self.files.public_url + path, params)
        return (session or requests).post(self.url + path, data=params, headers={"X-Twilio-Signature": sig},
                                          timeout=10)


def start_server(files: TeamFiles, async_mode: str = "gevent", port: int | None = None) -> LiveServer:
    """Serve ``files`` with ``python app.py``; its public_url becomes the local URL, as for `make run`."""
    port = port or free_port()
    files.write_ini(public_url=f"http://127.0.0.1:{port}")
    log_path = files.root / f"server-{port}.log"
    env = {**os.environ, **files.environ, "PYTHONUNBUFFERED": "1"}
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port), "--async-mode", async_mode],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )
    server = LiveServer(url=f"http://127.0.0.1:{port}", files=files, process=process, log_path=log_path)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode}:\n{server.log()}")
        try:
            if requests.get(server.url + "/healthz", timeout=1).status_code == 200:
                return server
        except requests.ConnectionError:
            time.sleep(0.1)
    server.stop()
    raise RuntimeError(f"the server did not answer within 30 s:\n{server.log()}")


@pytest.fixture
def live_server(tmp_path: Path) -> Iterator[LiveServer]:
    """The real server (``python app.py``, gevent) on a free loopback port, with its own team files."""
    server = start_server(make_team_files(tmp_path))
    yield server
    server.stop()


def live_login(server: LiveServer, name: str, password: str | None = None,
               session: requests.Session | None = None) -> requests.Session:
    """A requests session (``session``, or a new one) logged in to the live server (its cookie works for
    Socket.IO too)."""
    session = session or requests.Session()
    page = session.get(server.url + "/login", timeout=10)
    response = session.post(
        server.url + "/login",
        data={"username": name, "password": password or PASSWORDS[name], "csrf_token": csrf_token_from(page.text)},
        allow_redirects=False, timeout=10,
    )
    assert response.status_code == 302, response.text
    return session


def phone_started_on(url: str, session: requests.Session, socket, name: str) -> None:
    """Send ``phone {"ready": true}`` on a live server's Socket.IO client of ``name`` (logged in as ``session``),
    as the page does when its Device registers, and wait until the server at ``url`` says they are available
    (GET /team): a call to their number rings them from then on."""
    socket.emit("phone", {"ready": True})
    deadline = time.monotonic() + 10
    states: dict[str, str] = {}
    while time.monotonic() < deadline:
        states = {member["user"]: member["state"] for member in session.get(url + "/team", timeout=10).json()["team"]}
        if states.get(name) == "available":
            return
        time.sleep(0.05)
    raise AssertionError(f"the server never counted {name}'s phone: {states}")


# ------------------------------------------------------------------------ real servers for presence and mail


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory) -> Iterator:
    """A real redis-server on a free loopback port (deployment_helpers.Redis), for one test module."""
    from deployment_helpers import Redis

    server = Redis(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def tls_certificate(tmp_path_factory) -> tuple[Path, Path]:
    """A self-signed certificate and key for 127.0.0.1 (deployment_helpers.make_certificate)."""
    from deployment_helpers import make_certificate

    return make_certificate(tmp_path_factory.mktemp("tls"))


# ------------------------------------------------------------------------ the store's databases

STORE_START = datetime(2026, 11, 22, 16, 0, 0, tzinfo=UTC)


class FakeClock:
    """A clock the test moves by hand."""

    def __init__(self, now: datetime = STORE_START):
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


_postgres_databases = count()


@pytest.fixture(scope="session")
def postgres():
    """One real PostgreSQL server for the session (deployment_helpers.Postgres); a missing server fails."""
    from deployment_helpers import Postgres

    server = Postgres()
    try:
        server.start()
        yield server
    finally:
        server.destroy()


def new_postgres_database(server) -> str:
    return server.create_database(f"store_{next(_postgres_databases)}")


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database of each backend: a SQLite file, and a new database on the session's PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/instance/shetphone.sqlite3"
    return new_postgres_database(request.getfixturevalue("postgres"))


@pytest.fixture
def store(database_url: str, clock: FakeClock):
    from shetphone.store import Store

    opened = Store(database_url, keep_days=90, clock=clock)
    yield opened
    opened.close()


@pytest.fixture
def calllog(store):
    """The call log of ``store``."""
    return store.calls


@pytest.fixture
def app_on_each_database(team_files: TeamFiles, database_url: str):
    """The app with its store on each backend (``database_url``: a SQLite file, then a PostgreSQL database)."""
    from shetphone import create_app
    from shetphone.settings import load_settings

    team_files.ini_template = INI.replace("database = shetphone.sqlite3", f"database = {database_url}")
    team_files.write_ini()
    app = create_app(load_settings(team_files.root, team_files.environ), async_mode="threading",
                     overrides={"TESTING": True})
    # No housekeeping threads: they would outlive the test, and the session's PostgreSQL.
    app.extensions["shetphone_watcher_pid"] = os.getpid()
    yield app
    app.extensions["shetphone"].store.close()


@pytest.fixture
def impatient_app(settings, monkeypatch: pytest.MonkeyPatch):
    """The app, its store giving up on a locked database after 0.2 s rather than a few seconds."""
    from shetphone import create_app
    from shetphone.store import engine

    monkeypatch.setattr(engine, "WAIT_SECONDS", 0.2)
    app = create_app(settings, async_mode="threading", overrides={"TESTING": True})
    # No housekeeping thread: its own connection to the file would keep the tests' exclusive lock out.
    app.extensions["shetphone_watcher_pid"] = os.getpid()
    yield app
    app.extensions["shetphone"].store.close()


def pytest_collection_modifyitems(config, items) -> None:
    """Run the browser tests last.

    Playwright's sync API keeps an asyncio loop running in the main thread for as
    long as its session-wide browser lives; any test after it that calls
    asyncio.run() (the bridge's) would fail with "cannot be called from a running
    event loop".
    """
    items.sort(key=lambda item: item.get_closest_marker("browser") is not None)


# ------------------------------------------------------------------ Twilio stand-in


@pytest.fixture
def standin() -> Iterator:
    """Twilio's REST API and call engine (tests/twilio_standin.py) for a fresh account; callbacks manual."""
    from twilio_standin import TwilioStandIn

    environment = twilio_environment()
    host = TwilioStandIn(environment["TWILIO_ACCOUNT_SID"], environment["TWILIO_AUTH_TOKEN"])
    yield host
    host.stop()
