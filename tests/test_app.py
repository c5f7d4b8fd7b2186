"""The entry point: `python app.py` on gevent and eventlet, clear start-up errors, first-run files."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import requests
import socketio
from conftest import ROOT, browser_with_phone, free_port, live_login, make_team_files, phone_started_on, start_server

from shetphone import shut_down
from shetphone.bootstrap import create_missing
from shetphone.presence import State
from shetphone.settings import load_settings
from shetphone.store import StoreUnavailable
from shetphone.team import names_not_in_htpasswd
from shetphone.users import load_users


def start_and_fail(team_files) -> subprocess.CompletedProcess:
    """`python app.py` on a configuration that should stop it before it serves."""
    return subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--port", "1"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **team_files.environ}, capture_output=True, text=True, timeout=60,
    )


def test_bad_configuration_stops_the_start_with_one_line(team_files):
    team_files.ini.write_text(team_files.ini.read_text().replace("+441595000004 = carol", "+4415 = carol"))
    result = start_and_fail(team_files)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(f"shetphone: {team_files.ini}:")
    assert "[shetphone:numbers] +4415: '+4415' is not a valid phone number" in lines[0]


def test_a_malformed_presets_file_stops_the_start(team_files):
    team_files.presets.write_text("alias,country code,number\nMum,44\n")
    result = start_and_fail(team_files)
    assert result.returncode == 2
    expected = f"shetphone: {team_files.presets}:2: row: has 2 fields; expected alias,country code,number"
    assert result.stderr.strip() == expected


def test_an_htpasswd_with_no_users_stops_the_start_with_one_line(team_files):
    team_files.htpasswd.write_text("# nobody yet\n")
    result = start_and_fail(team_files)
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"shetphone: {team_files.htpasswd}: has no users; add one with `flask --app app users add NAME`"
    )


def test_a_port_another_program_holds_is_one_line_and_never_said_to_be_served(team_files):
    import socket

    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        result = subprocess.run(
            [sys.executable, str(ROOT / "app.py"), "--port", str(port)],
            cwd=ROOT, env={"PATH": "/usr/bin:/bin", **team_files.environ}, capture_output=True, text=True, timeout=60,
        )
    assert result.returncode == 2
    assert f"shetphone: cannot listen on 127.0.0.1:{port}: Address already in use (another program has it: choose " \
        "another with --port or PORT)" in result.stderr.splitlines()
    assert "Traceback" not in result.stderr
    assert "Shetphone on http" not in result.stdout


def test_a_port_that_is_not_a_number_is_one_line(team_files):
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py")], cwd=ROOT,
        env={"PATH": "/usr/bin:/bin", **team_files.environ, "PORT": "80OO"}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.splitlines()[-1] == "app.py: error: argument --port: invalid int value: '80OO'"


@pytest.mark.parametrize("async_mode", ["eventlet"])
def test_the_built_in_server_works_on_eventlet_too(tmp_path, async_mode):
    server = start_server(make_team_files(tmp_path), async_mode=async_mode)
    try:
        assert f"({async_mode})" in server.log()
        session = live_login(server, "alice")
        assert session.get(server.url + "/token", timeout=10).json()["identity"] == "alice"
        received = []
        client = socketio.Client(http_session=session, reconnection=False)
        client.on("call_status", received.append)
        client.connect(server.url, transports=["websocket"], wait_timeout=10)
        phone_started_on(server.url, session, client, "alice")  # the call rings her page
        root, leg = "CA" + "1" * 32, "CA" + "2" * 32  # as Twilio's: two letters, 32 hex digits
        server.post_signed("/voice", {"CallSid": root, "From": "+447700900123", "To": "+441595000001"})
        server.post_signed("/voice/status", {"CallSid": leg, "ParentCallSid": root, "CallStatus": "ringing",
                                             "SequenceNumber": "0"})
        client.sleep(0)
        for _ in range(100):
            if received:
                break
            client.sleep(0.1)
        assert received and received[0]["call_sid"] == leg
        client.disconnect()
    finally:
        server.stop()


def test_first_run_creates_files_that_fit_together(tmp_path):
    for name in ("shetphone.ini.example", "presets.csv.example"):
        shutil.copy(ROOT / name, tmp_path / name)
    said = create_missing(tmp_path, 5055)
    password_line = next(line for line in said if "password:" in line)
    password = password_line.rsplit(": ", 1)[1]
    assert len(password) >= 16
    users = load_users(tmp_path / ".htpasswd")
    assert users.names() == ["admin"] and users.verify("admin", password)
    assert oct((tmp_path / ".htpasswd").stat().st_mode & 0o777) == "0o600"
    settings = load_settings(tmp_path, {"SHETPHONE_SECRET_KEY": "k"})
    assert settings.public_url == "http://127.0.0.1:5055"
    assert settings.clients["admin"]  # admin may call from an example number
    assert any("admin" in target.clients for target in settings.numbers.values())
    assert names_not_in_htpasswd(settings, users) == []  # check-config has nothing to warn of on a first run
    # a second run changes nothing and prints no password
    before = (tmp_path / ".htpasswd").read_text()
    assert create_missing(tmp_path, 5055) == []
    assert (tmp_path / ".htpasswd").read_text() == before


def test_two_first_runs_give_different_passwords(tmp_path):
    passwords = []
    for run in ("a", "b"):
        root = tmp_path / run
        root.mkdir()
        for name in ("shetphone.ini.example", "presets.csv.example"):
            shutil.copy(ROOT / name, root / name)
        said = create_missing(root, 5000)
        passwords.append(next(line for line in said if "password:" in line).rsplit(": ", 1)[1])
    assert passwords[0] != passwords[1]


def test_healthz_on_the_gevent_server(live_server):
    assert requests.get(live_server.url + "/healthz", timeout=10).json() == {"status": "ok"}
    assert "(gevent)" in live_server.log()


def test_a_database_from_a_newer_shetphone_stops_the_start_with_one_line(team_files):
    import sqlite3

    from shetphone.store import Store

    database = team_files.root / "shetphone.sqlite3"
    Store(f"sqlite:///{database}").close()
    with sqlite3.connect(database) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    result = subprocess.run(
        [sys.executable, str(ROOT / "app.py"), "--port", "1"],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **team_files.environ}, capture_output=True, text=True, timeout=60,
    )
    assert result.returncode == 2
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith(f"shetphone: database sqlite:///{database}: at revision 0099, which this Shetphone")


# --------------------------------------------------------------- the database and the queue at start


def failing_start(case: str, team_files, request) -> list[str]:
    """Write ``case``'s fault into the ini; what the one line must say."""
    if case == "sqlite under a file":
        database = f"{team_files.presets}/shetphone.sqlite3"
        expected = [f"database sqlite:///{database}: cannot make its directory: {team_files.presets} is a file, "
                    "not a directory"]
    elif case == "sqlite where nobody may write":
        database = "/proc/1/shetphone.sqlite3"  # a directory where nobody may create a file, root included
        expected = ["database sqlite:////proc/1/shetphone.sqlite3: unable to open database file "
                    "(may this user create and write files in /proc/1?)"]
    elif case == "postgresql refusing":
        database = f"postgresql://shetphone:pg-secret@127.0.0.1:{free_port()}/shetphone"
        expected = ["database postgresql+psycopg://shetphone:***@127.0.0.1:", "Connection refused"]
    elif case == "postgresql silent":
        port = request.getfixturevalue("silent_server").port
        database = f"postgresql://shetphone:pg-secret@127.0.0.1:{port}/shetphone"
        expected = [f"database postgresql+psycopg://shetphone:***@127.0.0.1:{port}/shetphone: ", "timeout expired"]
    elif case == "redis refusing":
        url = request.getfixturevalue("refusing_url")
        team_files.write_ini(extra=f"message_queue = {url}\n")
        return [f"{team_files.ini}: [shetphone] message_queue: {url} does not answer (", "Connection refused",
                    "start Redis, or correct the URL"]
    elif case == "redis silent":
        url = request.getfixturevalue("silent_server").url.replace("redis://", "redis://:redis-secret@")
        team_files.write_ini(extra=f"message_queue = {url}\n")
        return [f"[shetphone] message_queue: {url.replace('redis-secret', '***')} does not answer (Timeout"]
    else:
        raise AssertionError(case)
    ini = team_files.ini.read_text()
    team_files.ini.write_text(ini.replace("database = shetphone.sqlite3", f"database = {database}"))
    return expected


START_FAULTS = ["sqlite under a file", "sqlite where nobody may write", "postgresql refusing", "postgresql silent",
                "redis refusing", "redis silent"]


def assert_one_line(output: str, prefix: str, expected: list[str]) -> None:
    assert "Traceback" not in output
    (line,) = output.strip().splitlines()
    assert line.startswith(prefix), line
    for part in expected:
        assert part in line, (part, line)
    assert "secret" not in line  # passwords never reach the console


@pytest.mark.parametrize("case", START_FAULTS)
def test_a_database_or_queue_that_cannot_be_reached_stops_the_start_with_one_line(case, team_files, request):
    expected = failing_start(case, team_files, request)
    result = start_and_fail(team_files)
    assert result.returncode == 2
    assert_one_line(result.stderr, "shetphone: ", expected)
    assert "Shetphone on http" not in result.stdout


@pytest.mark.parametrize("case", START_FAULTS)
def test_check_config_reaches_the_database_and_the_queue_and_says_what_failed(case, team_files, request):
    from test_cli import flask

    expected = failing_start(case, team_files, request)
    result = flask(team_files, "check-config")
    assert result.returncode == 1
    assert_one_line(result.stderr, "Error: ", expected)


def test_under_uwsgi_a_start_error_is_one_line_and_stops_the_instance(team_files, refusing_url):
    """need-app with lazy-apps, as the example: the worker's exit status 22 makes the master stop, not respawn."""
    uwsgi_options = ("module = app:app\nneed-app = true\nmaster = true\nprocesses = 1\nlazy-apps = true\n"
                     "gevent = 10\ngevent-early-monkey-patch = true\nhttp-websockets = true\n"
                     f"http-socket = 127.0.0.1:{free_port()}\n")
    team_files.ini_template = team_files.ini_template.replace("module = app:app\n", uwsgi_options)
    team_files.write_ini(extra=f"message_queue = {refusing_url}\n")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("uwsgi")), "--ini", str(team_files.ini)],
        cwd=ROOT, env={"PATH": "/usr/bin:/bin", **team_files.environ}, capture_output=True, text=True, timeout=60,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 22, output
    assert "Traceback" not in output
    said = [line for line in output.splitlines() if line.startswith("shetphone: ")]
    assert said == [f"shetphone: {team_files.ini}: [shetphone] message_queue: {refusing_url} does not answer "
                    f"(Error 111 connecting to 127.0.0.1:{refusing_url.rsplit(':', 1)[1].split('/')[0]}. "
                    "Connection refused.); start Redis, or correct the URL"]


def test_the_entry_point_keeps_its_start_up_heap_out_of_later_collections(team_files):
    """A full collection walked every object start-up made, stopping the process for tens of ms."""
    probe = "import gc, app; print(gc.get_freeze_count())"
    result = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, env={"PATH": "/usr/bin:/bin", **team_files.environ},
        capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) > 50_000  # the app, its modules and tables: all of it, not a handful

# ----------------------------------------------------------------------------- a clean stop


def presence_events(browser) -> list[dict]:
    return [event["args"][0] for event in browser.get_received() if event["name"] == "presence"]


def test_shut_down_announces_who_went_offline_stops_the_mailer_and_happens_once(app_with):
    app = app_with("smtp_url = smtp://127.0.0.1:2525\nmail_from = Shetphone <phone@example.test>")
    team = app.extensions["shetphone"]
    mailer = threading.Thread(target=team.mail.run_forever, daemon=True)
    mailer.start()
    alice, bob = browser_with_phone(app, "alice"), browser_with_phone(app, "bob")
    carol = browser_with_phone(app, "carol", ready=False)  # shares no number with them
    for browser in (alice, bob, carol):
        browser.get_received()

    shut_down(app)
    heard = presence_events(bob)
    assert {"user": "alice", "state": "offline"} in heard and {"user": "bob", "state": "offline"} in heard
    assert presence_events(carol) == []
    assert team.presence.states(["alice", "bob"]) == {"alice": State.OFFLINE, "bob": State.OFFLINE}
    mailer.join(10)
    assert not mailer.is_alive()  # the mailer took no more rows and ended

    shut_down(app)  # a second signal, or uWSGI's atexit after ours: nothing more
    bob.emit("phone", {"ready": True})  # a page's phone event racing the stop
    assert presence_events(bob) == []


def test_shut_down_with_the_database_down_withdraws_and_says_so_in_one_line(app, monkeypatch, caplog):
    team = app.extensions["shetphone"]
    browser_with_phone(app, "alice")

    def unavailable(users):
        raise StoreUnavailable("the database did not answer within 2 s")

    monkeypatch.setattr(team.presence, "publish", unavailable)
    caplog.clear()
    shut_down(app)
    assert team.presence.browsers.ready_users(["alice"]).users == frozenset()
    warnings = [record for record in caplog.records if record.levelname == "WARNING"]
    assert [record.getMessage() for record in warnings] == [
        "presence: this process's browsers were withdrawn but not announced: the database did not answer within 2 s"]
    assert "Traceback" not in caplog.text


@pytest.mark.parametrize(("async_mode", "signum"), [("gevent", signal.SIGINT), ("eventlet", signal.SIGTERM)])
def test_a_stop_with_redis_down_is_one_line_and_exits_as_usual(tmp_path, redis_server, async_mode, signum):
    server = start_server(make_team_files(tmp_path, extra=f"message_queue = {redis_server.url}"), async_mode)
    try:
        session = live_login(server, "alice")
        client = socketio.Client(http_session=session, reconnection=False)
        client.connect(server.url, transports=["websocket"], wait_timeout=10)
        phone_started_on(server.url, session, client, "alice")
        redis_server.stop()
        server.process.send_signal(signum)
        assert server.process.wait(30) == 0
    finally:
        server.stop()
        redis_server.start()
    log = server.log()
    assert "Traceback" not in log
    said = [line for line in log.splitlines() if " shetphone.presence: " in line]
    assert len(said) == 1, log
    assert "this stopping process's browsers (1) count elsewhere until presence_ttl (45 s) runs out" in said[0]
    assert log.rstrip().endswith("INFO shetphone: stopped cleanly")
