"""Admin commands: ``flask --app app users add|remove|list``, ``check-config`` and ``db upgrade``."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

import click
from flask import Flask
from flask.cli import AppGroup

from . import message_queue
from .message_queue import MessageQueueUnavailable
from .settings import KEYS, ConfigError, Key, Settings
from .store import Store, StoreError, Upgrade, migrate
from .team import names_not_in_htpasswd
from .users import load_users, remove_user, set_password

T = TypeVar("T")
StartError = ConfigError | StoreError | MessageQueueUnavailable  # what stops the app from starting

users = AppGroup("users", help="Manage the people who may log in (.htpasswd, bcrypt).")
db = AppGroup("db", help="The database: its schema (the start upgrades it too).")


def register_commands(app: Flask, settings: Settings | None = None, error: StartError | None = None) -> None:
    """Register the commands; with ``error`` the app could not start and check-config reports it."""

    def current_settings() -> Settings:
        if settings is not None:
            return settings
        from . import current_team

        return current_team().settings

    def fail(message: object) -> None:
        click.echo(f"Error: {message}", err=True)
        sys.exit(1)

    def with_store(work: Callable[[Store], T]) -> T:
        """``work`` on the running app's store, or (the app could not start) on one opened for it."""
        if settings is None:
            from . import current_team

            return work(current_team().store)
        store = Store(settings.database_url, keep_days=settings.keep_days, session_hours=settings.session_hours)
        try:
            return work(store)
        finally:
            store.close()

    @users.command("add")
    @click.argument("name")
    @click.password_option(prompt="Password", confirmation_prompt=True)
    def add(name: str, password: str) -> None:
        """Add NAME, or set a new password (bcrypt) and end their logins; their open pages go to the login page."""
        if len(password) < 8:
            fail("the password must be at least 8 characters")
        path = current_settings().htpasswd_path
        try:
            created = set_password(path, name, password)
        except (ConfigError, ValueError) as exc:
            fail(exc)
        if created:
            click.echo(f"Added {name} in {path}")
            return
        # A new password logs them out everywhere: whoever knew the old one is out too.
        ended = end_logins(name, "the running app ends them when it sees the new password")
        click.echo(f"Updated {name} in {path}" + (f" and ended {logins(ended)} of {name}" if ended is not None else ""))

    @users.command("remove")
    @click.argument("name")
    def remove(name: str) -> None:
        """Remove NAME and end their logins; their open pages go to the login page."""
        path = current_settings().htpasswd_path
        try:
            removed = remove_user(path, name)
        except (ConfigError, ValueError) as exc:
            fail(exc)
        if not removed:
            fail(f"no user {name} in {path}")
        click.echo(f"Removed {name} from {path}")
        ended = end_logins(name, f"the app refuses {name} anyway, and ends them when it sees the change")
        if ended is not None:
            click.echo(f"Ended {logins(ended)} of {name}")

    def end_logins(name: str, meanwhile: str) -> int | None:
        """End every login of ``name`` (their open pages go to the login page): how many; None, said why, if not."""
        try:
            return with_store(lambda store: store.logins.end_user(name))
        except StoreError as exc:
            click.echo(f"Warning: {name}'s logins could not be ended ({exc}); {meanwhile}", err=True)
            return None

    @users.command("list")
    def list_users() -> None:
        """List the user names."""
        try:
            names = load_users(current_settings().htpasswd_path).names()
        except ConfigError as exc:
            fail(exc)
        for name in names:
            click.echo(name)

    @app.cli.command("check-config")
    @click.option("--smtp", is_flag=True, help="Also connect to smtp_url and say hello (TLS, login, NOOP).")
    def check_config(smtp: bool) -> None:
        """Validate the ini file, .env, .htpasswd and presets.csv; reach the database and the message queue."""
        if error is not None:
            fail(error)
        s = current_settings()
        click.echo(f"{s.config_path}: ok")
        for row in KEYS:
            click.echo("  " + key_in_force(s, row))
        click.echo(f"{s.htpasswd_path}: ok")
        for warning in names_not_in_htpasswd(s, load_users(s.htpasswd_path)):
            click.echo(f"Warning: {warning}", err=True)
        click.echo(f"{s.presets_path}: ok")
        try:
            click.echo(with_store(describe_database))
            message_queue.check_configured(s)
        except (StoreError, MessageQueueUnavailable) as exc:
            fail(exc)
        if s.message_queue:
            click.echo(f"message_queue {without_password(s.message_queue)}: ok, it answers")
        if s.twilio.missing:
            click.echo("Twilio is not configured (calling is off): set " + ", ".join(s.twilio.missing))
        if smtp:
            check_smtp(s, fail)

    @db.command("upgrade")
    def upgrade_database() -> None:
        """Bring the database's schema to the newest revision this Shetphone knows."""
        # Started, the app upgraded the database on the way; else opening a store upgrades it.
        try:
            click.echo(with_store(lambda store: describe_upgrade(store.database.name, store.upgraded)))
        except StoreError as exc:
            fail(exc)

    app.cli.add_command(users)
    app.cli.add_command(db)


def logins(count: int) -> str:
    return f"{count} login{'' if count == 1 else 's'}"


def key_in_force(settings: Settings, row: Key) -> str:
    """One key of the table as it stands: written in the file, its default, or not set."""
    where = f"[{row.section}] {row.name}"
    text = settings.written.get((row.section, row.name))
    if text is None and row.default is None:
        return f"{where}: not set" + (f" ({row.unset})" if row.unset else "")
    shown = without_password(text or row.default) if row.secret else (text or row.default)
    return f"{where} = {shown}" + (" (the default)" if text is None else "")


def without_password(url: str) -> str:
    """A URL fit to print: the password in it, if any, replaced by ***."""
    parts = urlsplit(url)
    if not parts.password:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()




def describe_database(store: Store) -> str:
    """Asks the database (a real round trip) for its revision."""
    return f"database {store.database.name}: ok, at revision {migrate.current(store.database)}"


def check_smtp(settings: Settings, fail: Callable[[object], None]) -> None:
    """``check-config --smtp``: the SMTP server of ``smtp_url`` answers, takes TLS and the login."""
    from .mail import MailError, SmtpConfig, SmtpSender

    if not settings.smtp_url:
        fail(f"{settings.config_path}: [shetphone] smtp_url: is not set, so no voicemail is e-mailed")
        return
    try:
        click.echo(SmtpSender(SmtpConfig.from_url(settings.smtp_url)).hello())
    except MailError as exc:
        fail(exc)


def describe_upgrade(database: str, upgrade: Upgrade) -> str:
    if not upgrade.changed:
        return f"database {database}: at revision {upgrade.after}, the newest"
    return f"database {database}: upgraded from {upgrade.before or 'empty'} to revision {upgrade.after}"


def cli_app_for_broken_config(error: StartError) -> Flask:
    """An app holding only the admin commands, for when the real one cannot start."""
    from . import ROOT
    from .settings import load_settings

    app = Flask("shetphone")
    try:
        settings = load_settings(ROOT)  # the ini may be fine and only .htpasswd or presets.csv broken
    except ConfigError:
        settings = None

    if settings is None:

        def report() -> None:
            click.echo(f"Error: {error}", err=True)
            sys.exit(1)

        app.cli.command("check-config", help="Validate the configuration.")(report)
        broken_db = AppGroup("db", help=db.help)
        broken_db.command("upgrade", help="Upgrade the database (once the configuration is fixed).")(report)
        app.cli.add_command(broken_db)
        # .htpasswd is named by the ini: without it the users commands say why, not "No such command".
        broken_users = AppGroup("users", help=users.help)
        helps = {"add": "Add NAME or set a new password", "remove": "Remove NAME", "list": "List the user names"}
        for name, what in helps.items():
            broken_users.command(name, help=f"{what} (once the configuration is fixed).",
                                 context_settings={"ignore_unknown_options": True})(
                click.argument("arguments", nargs=-1, type=click.UNPROCESSED)(lambda arguments: report()))
        app.cli.add_command(broken_users)
        return app
    register_commands(app, settings, error)
    return app
