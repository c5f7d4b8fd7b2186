"""The admin commands, run as people run them: `flask --app app ...` in a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys

from conftest import ROOT, TeamFiles, login, settled

from shetphone.cli import key_in_force
from shetphone.settings import KEYS, load_settings
from shetphone.store import Store, migrate
from shetphone.users import load_users


def flask(files: TeamFiles, *args: str, stdin: str = "") -> subprocess.CompletedProcess:
    env = {"PATH": "/usr/bin:/bin", **files.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "flask", "--app", "app", *args],
        cwd=ROOT, env=env, input=stdin, capture_output=True, text=True, timeout=60,
    )


def test_users_add_list_remove(team_files):
    added = flask(team_files, "users", "add", "dave", stdin="dave's password\ndave's password\n")
    assert added.returncode == 0, added.stderr
    assert f"Added dave in {team_files.htpasswd}" in added.stdout
    assert load_users(team_files.htpasswd).verify("dave", "dave's password")
    assert "dave:$2" in team_files.htpasswd.read_text()

    listed = flask(team_files, "users", "list")
    assert listed.stdout.split() == ["alice", "bob", "carol", "dave"]

    removed = flask(team_files, "users", "remove", "bob")
    assert removed.returncode == 0
    assert "bob" not in load_users(team_files.htpasswd)
    assert removed.stdout.splitlines() == [f"Removed bob from {team_files.htpasswd}", "Ended 0 logins of bob"]

    missing = flask(team_files, "users", "remove", "bob")
    assert missing.returncode == 1
    assert "no user bob" in missing.stderr


def test_users_add_refuses_a_short_password(team_files):
    result = flask(team_files, "users", "add", "eve", stdin="short\nshort\n")
    assert result.returncode == 1
    assert "at least 8 characters" in result.stderr
    assert "eve" not in load_users(team_files.htpasswd)


def test_check_config_ok(team_files):
    result = flask(team_files, "check-config")
    assert result.returncode == 0, result.stderr
    assert f"{team_files.ini}: ok" in result.stdout


def test_check_config_reaches_the_database_and_the_message_queue(team_files, redis_server):
    team_files.write_ini(extra=f"message_queue = {redis_server.url}\n")
    result = flask(team_files, "check-config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    database = team_files.root / "shetphone.sqlite3"
    assert f"database sqlite:///{database}: ok, at revision {migrate.head()}" in lines
    assert f"message_queue {redis_server.url}: ok, it answers" in lines


def test_check_config_reports_one_clear_line(team_files):
    team_files.ini.write_text(team_files.ini.read_text().replace("ring_timeout = 20", "ring_timeout = never"))
    result = flask(team_files, "check-config")
    assert result.returncode != 0
    assert result.stderr.strip().splitlines() == [
        f"Error: {team_files.ini}:9: [shetphone] ring_timeout: 'never' is not a whole number of seconds"
    ]
    assert "Traceback" not in result.stdout + result.stderr


def test_check_config_reports_a_bad_htpasswd_and_users_add_still_works(team_files):
    team_files.htpasswd.write_text(team_files.htpasswd.read_text() + "mallory:plaintext\n")
    result = flask(team_files, "check-config")
    assert result.returncode != 0
    assert f"{team_files.htpasswd}:4: mallory: is not a bcrypt" in result.stderr
    assert "Traceback" not in result.stderr
    listed = flask(team_files, "users", "list")
    assert listed.returncode == 1
    assert "plaintext is refused" in listed.stderr


def test_check_config_warns_of_a_ring_group_member_who_is_not_a_user(team_files):
    # A typo in [shetphone:numbers] rings nobody, silently; it is not an error (a user may come later).
    text = team_files.ini.read_text()
    team_files.ini.write_text(text.replace("+441595000001 = alice bob", "+441595000001 = alice bbo"))
    written_at = team_files.ini.read_text().splitlines().index("+441595000001 = alice bbo") + 1
    result = flask(team_files, "check-config")
    assert result.returncode == 0, result.stderr
    assert [line for line in result.stderr.splitlines() if line.startswith("Warning")] == [
        f"Warning: {team_files.ini}:{written_at}: [shetphone:numbers] +441595000001: bbo is not a user in "
        f"{team_files.htpasswd} (a typo? or add them: flask --app app users add bbo)"
    ]


def test_check_config_names_missing_twilio_variables(team_files):
    del team_files.environ["TWILIO_API_SECRET"]
    result = flask(team_files, "check-config")
    assert result.returncode == 0
    assert "set TWILIO_API_SECRET" in result.stdout


def test_users_remove_refuses_the_last_user(team_files):
    for name in ("alice", "bob"):
        assert flask(team_files, "users", "remove", name).returncode == 0
    last = flask(team_files, "users", "remove", "carol")
    assert last.returncode == 1
    assert last.stderr.strip() == f"Error: carol is the last user in {team_files.htpasswd}; add another one first"
    assert load_users(team_files.htpasswd).names() == ["carol"]


def test_check_config_shows_every_key_of_the_table_as_it_stands(team_files):
    result = flask(team_files, "check-config")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    for row in KEYS:
        assert any(line.strip().startswith(f"[{row.section}] {row.name}") for line in lines), row.name
    assert "  [shetphone] ring_timeout = 20" in lines  # written in the file
    assert "  [shetphone] keep_days = 90 (the default)" in lines
    assert "  [shetphone] message_queue: not set" in lines
    assert "  [shetphone] allowed_countries: not set (regions of every number)" in lines


def test_check_config_hides_passwords_in_urls(team_files):
    team_files.write_ini(extra="message_queue = redis://:redis-password@127.0.0.1:6379/0")
    settings = load_settings(team_files.root, team_files.environ)
    (row,) = [row for row in KEYS if row.name == "message_queue"]
    assert key_in_force(settings, row) == "[shetphone] message_queue = redis://:***@127.0.0.1:6379/0"


def test_db_upgrade_brings_a_version_1_database_up_once(team_files):
    import shutil

    from shetphone.store import migrate

    database = team_files.root / "shetphone.sqlite3"  # the ini's database
    shutil.copy(ROOT / "tests" / "data" / "shetphone-v1.sqlite3", database)
    upgraded = flask(team_files, "db", "upgrade")
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip() == (
        f"database sqlite:///{database}: upgraded from schema_version 1 to revision {migrate.head()}")
    again = flask(team_files, "db", "upgrade")
    assert again.stdout.strip() == f"database sqlite:///{database}: at revision {migrate.head()}, the newest"


def test_a_database_newer_than_the_code_is_one_clear_line(team_files):
    import sqlite3

    assert flask(team_files, "db", "upgrade").returncode == 0  # a fresh database, made by the revisions
    with sqlite3.connect(team_files.root / "shetphone.sqlite3") as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    for command in (["db", "upgrade"], ["check-config"]):
        result = flask(team_files, *command)
        assert result.returncode == 1
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"Error: database sqlite:///{team_files.root / 'shetphone.sqlite3'}: at revision 0099,")
        assert "upgraded by a newer Shetphone" in line


def test_db_upgrade_with_a_broken_ini_says_what_is_wrong(team_files):
    team_files.ini.write_text(team_files.ini.read_text().replace("ring_timeout = 20", "ring_timeout = never"))
    result = flask(team_files, "db", "upgrade")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"Error: {team_files.ini}:9: [shetphone] ring_timeout: 'never' is not a whole number of seconds"
    ]


def test_the_users_commands_with_a_broken_ini_say_what_is_wrong(team_files):
    # The ini names .htpasswd; with it broken, "No such command 'users'" would send them looking elsewhere.
    team_files.ini.write_text(team_files.ini.read_text().replace("ring_timeout = 20", "ring_timeout = never"))
    before = team_files.htpasswd.read_text()
    for args in (["list"], ["add", "dave"], ["remove", "bob"]):
        result = flask(team_files, "users", *args, stdin="dave's password\ndave's password\n")
        assert result.returncode == 1
        assert result.stderr.strip().splitlines() == [
            f"Error: {team_files.ini}:9: [shetphone] ring_timeout: 'never' is not a whole number of seconds"
        ]
    assert team_files.htpasswd.read_text() == before


def test_users_remove_ends_that_users_logins(team_files):
    settings = load_settings(team_files.root, team_files.environ)
    store = Store(settings.database_url)
    try:
        bobs = [store.logins.begin("bob") for _ in range(2)]
        alices = store.logins.begin("alice")
        removed = flask(team_files, "users", "remove", "bob")
        assert removed.returncode == 0, removed.stderr
        assert removed.stdout.splitlines() == [f"Removed bob from {team_files.htpasswd}", "Ended 2 logins of bob"]
        assert not any(store.logins.check(login_id, "bob") for login_id in bobs)
        assert store.logins.check(alices, "alice")
    finally:
        store.close()


def test_users_add_with_a_new_password_ends_that_users_logins_and_nobody_elses(app, team_files):
    # The running app's watcher would end them too, once it sees the file change; not started
    # here, so what is ended is the command's doing.
    app.extensions["shetphone_watcher_pid"] = os.getpid()
    bob, alice = app.test_client(), app.test_client()
    assert login(bob, "bob").status_code == 302 and login(alice, "alice").status_code == 302
    assert bob.get("/").status_code == 200
    updated = flask(team_files, "users", "add", "bob", stdin="bob's new password\nbob's new password\n")
    assert updated.returncode == 0, updated.stderr
    assert updated.stdout.splitlines() == [f"Updated bob in {team_files.htpasswd} and ended 1 login of bob"]
    refused = bob.get("/")
    assert refused.status_code == 302 and refused.headers["Location"].startswith("/login")
    assert bob.get("/token").status_code == 401
    assert alice.get("/").status_code == 200  # another user's login is untouched
    settled(app.extensions["shetphone"].users)
    assert login(bob, "bob", "bob's new password").status_code == 302


def test_users_add_of_a_new_user_touches_no_login(team_files):
    settings = load_settings(team_files.root, team_files.environ)
    store = Store(settings.database_url)
    try:
        alices = store.logins.begin("alice")
        added = flask(team_files, "users", "add", "dave", stdin="dave's password\ndave's password\n")
        assert added.stdout.splitlines() == [f"Added dave in {team_files.htpasswd}"]
        assert store.logins.check(alices, "alice")
    finally:
        store.close()


def test_users_remove_with_the_database_away_still_removes_and_says_so(team_files):
    team_files.ini.write_text(team_files.ini.read_text().replace(
        "database = shetphone.sqlite3", "database = /proc/1/shetphone.sqlite3"))
    removed = flask(team_files, "users", "remove", "bob")
    assert removed.returncode == 0
    assert "bob" not in load_users(team_files.htpasswd)
    assert removed.stdout.strip() == f"Removed bob from {team_files.htpasswd}"
    (warning,) = removed.stderr.strip().splitlines()
    assert warning.startswith("Warning: bob's logins could not be ended (database sqlite:////proc/1/")
    assert "Traceback" not in removed.stderr


def test_users_add_with_the_database_away_still_changes_the_password_and_says_so(team_files):
    team_files.ini.write_text(team_files.ini.read_text().replace(
        "database = shetphone.sqlite3", "database = /proc/1/shetphone.sqlite3"))
    updated = flask(team_files, "users", "add", "bob", stdin="bob's new password\nbob's new password\n")
    assert updated.returncode == 0
    assert load_users(team_files.htpasswd).verify("bob", "bob's new password")
    assert updated.stdout.strip() == f"Updated bob in {team_files.htpasswd}"
    (warning,) = [line for line in updated.stderr.splitlines() if line.startswith("Warning: bob")]  # after the prompts
    assert warning.startswith("Warning: bob's logins could not be ended (database sqlite:////proc/1/")
    assert warning.endswith("; the running app ends them when it sees the new password")
    assert "Traceback" not in updated.stderr


def test_check_config_smtp_connects_and_says_hello(team_files):
    from smtp_helpers import SmtpServer

    server = SmtpServer().start()
    try:
        team_files.write_ini(extra=f"smtp_url = {server.url()}\nmail_from = phone@example.test")
        result = flask(team_files, "check-config", "--smtp")
        assert result.returncode == 0, result.stderr
        assert f"smtp://127.0.0.1:{server.port} said hello" in result.stdout
        assert "[shetphone] smtp_url = smtp://127.0.0.1" in result.stdout
        plain = flask(team_files, "check-config")  # without --smtp nothing connects
        assert plain.returncode == 0 and "said hello" not in plain.stdout
    finally:
        server.stop()
    down = flask(team_files, "check-config", "--smtp")
    assert down.returncode == 1
    (line,) = down.stderr.strip().splitlines()
    assert line.startswith(f"Error: smtp://127.0.0.1:{server.port}: ") and "refused" in line


def test_check_config_smtp_without_an_smtp_url_says_so(team_files):
    result = flask(team_files, "check-config", "--smtp")
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == (f"Error: {team_files.ini}: [shetphone] smtp_url: is not set, "
                                                      "so no voicemail is e-mailed")
