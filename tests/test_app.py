"""The entry point: `python app.py` on gevent and eventlet, clear start-up errors, first-run files."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import requests
import socketio
from conftest import ROOT, live_login, make_team_files, phone_started_on, start_server

from shetphone.bootstrap import create_missing
from shetphone.settings import load_settings
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
        server.post_signed("/voice", {"CallSid": "CA1", "From": "+447700900123", "To": "+441595000001"})
        server.post_signed("/voice/status", {"CallSid": "CA2", "ParentCallSid": "CA1", "CallStatus": "ringing",
                                             "SequenceNumber": "0"})
        client.sleep(0)
        for _ in range(100):
            if received:
                break
            client.sleep(0.1)
        assert received and received[0]["call_sid"] == "CA2"
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
