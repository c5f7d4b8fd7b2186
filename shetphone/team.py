"""The running team: settings and the stores built from them, in one object.

Built once by ``create_app`` and reached by the web faces through
``current_team()``; plain Python, so tests can build one without Flask.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from . import phone_numbers
from .dialing import DialPolicy, DialRefused, check_destination
from .directory import Directory
from .lockout import Lockout
from .mail import MailSender, SmtpConfig, SmtpSender
from .presence import Presence, browsers_for
from .presets import HEADER, Preset, parse_presets
from .settings import SECTION_CLIENTS, SECTION_EMAIL, SECTION_FORWARD, SECTION_NUMBERS, ConfigError, Settings
from .store import Store
from .twilio_rest import TwilioRest
from .users import Users, parse_htpasswd
from .watched import WatchedFile

LARGEST_ATTACHMENT = 25 * 1024 * 1024  # bytes; a two-minute voicemail is well under 2 MB


@dataclass
class Team:
    settings: Settings
    directory: Directory
    policy: DialPolicy
    users: WatchedFile[Users]
    presets: WatchedFile[tuple[Preset, ...]]
    store: Store  # the database: store.calls is the call log, store.logins the live logins
    lockout: Lockout
    presence: Presence  # who is available (SPEC §7)
    twilio_rest: TwilioRest | None = None  # Twilio's REST API; None until the account's SID and token are set
    mail: MailSender | None = None  # voicemail e-mail (SPEC §8); None without smtp_url and mail_from

    def teammates_of(self, user: str) -> list[str]:
        """The current users who share a number with ``user``, ``user`` included, by name."""
        current = self.users.current
        return sorted(name for name in self.directory.teammates_of(user) if name in current)

    def mail_addresses_for(self, number: str) -> list[str]:
        """Where a voicemail left on ``number`` is e-mailed: its ring group's current members' addresses."""
        if self.mail is None:
            return []
        current = self.users.current
        email = self.settings.email
        return [address for member in self.directory.clients_for(number) if member in current
                for address in email.get(member, ())]

    def alias_for(self, e164: str) -> str | None:
        """The preset alias of a number, if it is one."""
        return next((preset.alias for preset in self.presets.current if preset.e164 == e164), None)


def build_team(
    settings: Settings,
    on_users_changed: Callable[[Users, Users], None] | None = None,
    on_presets_changed: Callable[[tuple[Preset, ...], tuple[Preset, ...]], None] | None = None,
) -> Team:
    """Load everything strictly: a bad file raises ConfigError here, at start, and a database that
    cannot be opened or upgraded StoreError."""
    directory = Directory(settings.numbers, settings.clients)
    policy = DialPolicy.configured(settings.allowed_countries, settings.allow_premium, directory.team_numbers())
    check_phones_rung(settings, policy)
    users = WatchedFile(settings.htpasswd_path, parse_htpasswd, on_users_changed,
                        when_missing="add a user with `flask --app app users add NAME`")
    presets = WatchedFile(settings.presets_path, parse_presets, on_presets_changed,
                          when_missing=f"copy presets.csv.example, or for no presets write the line {','.join(HEADER)}")
    # the files first: they fail more often
    store = Store(settings.database_url, keep_days=settings.keep_days, session_hours=settings.session_hours)
    team = Team(
        settings=settings,
        directory=directory,
        policy=policy,
        users=users,
        presets=presets,
        store=store,
        twilio_rest=rest_client(settings),
        lockout=Lockout(settings.message_queue or "memory://"),
        presence=Presence(browsers_for(settings.message_queue, ttl=float(settings.presence_ttl)),
                          dnd=store.presence.dnd_of, busy=store.presence.busy_of, flags=store.presence.flags_of),
    )
    if settings.mail_configured:
        team.mail = mail_sender_for(settings, team)
    return team


def check_phones_rung(settings: Settings, policy: DialPolicy) -> None:
    """Outside phones and forward numbers are calls the team pays for: each must be one a user could dial
    (allowed_countries, allow_premium), or the start fails naming its line."""
    entries = [(SECTION_NUMBERS, number, phone) for number, target in settings.numbers.items()
               for phone in target.outside_numbers]
    entries += [(SECTION_FORWARD, user, phone) for user, phone in settings.forward.items()]
    for section, key, phone in entries:
        try:
            check_destination(phone, None, policy)
        except DialRefused as refused:
            region = phone_numbers.region_of(phone)
            if region and region != phone_numbers.NON_GEOGRAPHIC and not policy.allows_region(region):
                # Name the region: +447911 is Guernsey's and +447624 the Isle of Man's, not GB's.
                listed = " ".join(sorted(policy.allowed_countries))
                why = f"calls to {region} are not allowed (allowed_countries: {listed}; add {region} to ring it)"
            else:
                why = refused.reason.removeprefix("Sorry, ").rstrip(".") + " (allowed_countries, allow_premium)"
            raise settings.config_error(section, key, f"{phone} cannot be rung: {why}") from None


def names_not_in_htpasswd(settings: Settings, users: Users) -> list[ConfigError]:
    """The map entries naming someone who is not in ``.htpasswd``: a typo there (``alicee``) rings, forwards or
    mails nobody, silently. Warnings, not errors: a user may be listed before they are added."""
    entries = [(SECTION_NUMBERS, number, client) for number, target in settings.numbers.items()
               for client in target.clients]
    entries += [(section, name, name) for section, names in ((SECTION_CLIENTS, settings.clients or {}),
                                                              (SECTION_FORWARD, settings.forward),
                                                              (SECTION_EMAIL, settings.email)) for name in names]
    return [settings.config_error(section, key, f"{name} is not a user in {settings.htpasswd_path} (a typo? "
                                  f"or add them: flask --app app users add {name})")
            for section, key, name in entries if name not in users]


def mail_sender_for(settings: Settings, team: Team) -> MailSender:
    """The voicemail mailer: SMTP per ``smtp_url``, the recording from Twilio's REST API (``twilio_api_base``)."""
    transport = SmtpSender(SmtpConfig.from_url(settings.smtp_url or ""))
    return MailSender(team.store.outbox, transport.send, recording_fetcher(team.twilio_rest),
                      mail_from=settings.mail_from or "", page_url=settings.public_url + "/", alias_for=team.alias_for)


def recording_fetcher(rest: TwilioRest | None) -> Callable[[str], bytes]:
    """``recording sid -> its MP3`` through the team's one REST client; every failure raises (and is retried)."""

    def fetch(recording_sid: str) -> bytes:
        if rest is None:
            raise RuntimeError("Twilio is not configured: set TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN")
        audio = bytearray()
        with rest.recording_media(recording_sid) as media:
            for chunk in media.iter_content():
                audio += chunk
                if len(audio) > LARGEST_ATTACHMENT:
                    raise RuntimeError(f"the recording is larger than {LARGEST_ATTACHMENT // 2**20} MB")
        return bytes(audio)

    return fetch


def rest_client(settings: Settings) -> TwilioRest | None:
    """The one client of Twilio's REST API (recordings, call control), built once from the settings."""
    twilio = settings.twilio
    if not (twilio.account_sid and twilio.auth_token):
        return None
    return TwilioRest(twilio.account_sid, twilio.auth_token, api_base=settings.twilio_api_base)
