"""The running team: settings and the stores built from them, in one object.

Built once by ``create_app`` and reached by the web faces through
``current_team()``; plain Python, so tests can build one without Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .dialing import DialPolicy
from .directory import Directory
from .lockout import Lockout
from .presets import Preset, parse_presets
from .settings import Settings
from .store import Store
from .twilio_rest import TwilioRest
from .users import Users, parse_htpasswd
from .watched import WatchedFile


@dataclass
class Team:
    settings: Settings
    directory: Directory
    policy: DialPolicy
    users: WatchedFile[Users]
    presets: WatchedFile[tuple[Preset, ...]]
    store: Store  # the database: store.calls is the call log, store.logins the live logins
    lockout: Lockout
    twilio_rest: TwilioRest | None = None  # Twilio's REST API; None until the account's SID and token are set


def build_team(
    settings: Settings,
    on_users_changed: Callable[[Users, Users], None] | None = None,
    on_presets_changed: Callable[[tuple[Preset, ...], tuple[Preset, ...]], None] | None = None,
) -> Team:
    """Load everything strictly: a bad file raises ConfigError here, at start, and a database that
    cannot be opened or upgraded StoreError."""
    directory = Directory(settings.numbers, settings.clients)
    return Team(
        settings=settings,
        directory=directory,
        policy=DialPolicy.configured(settings.allowed_countries, settings.allow_premium, directory.team_numbers()),
        users=WatchedFile(settings.htpasswd_path, parse_htpasswd, on_users_changed),
        presets=WatchedFile(settings.presets_path, parse_presets, on_presets_changed),
        store=Store(settings.database_url, keep_days=settings.keep_days, session_hours=settings.session_hours),
        lockout=Lockout(settings.message_queue or "memory://"),
        twilio_rest=rest_client(settings),
    )


def rest_client(settings: Settings) -> TwilioRest | None:
    """The one client of Twilio's REST API (recordings, call control), built once from the settings."""
    twilio = settings.twilio
    if not (twilio.account_sid and twilio.auth_token):
        return None
    return TwilioRest(twilio.account_sid, twilio.auth_token, api_base=settings.twilio_api_base)
