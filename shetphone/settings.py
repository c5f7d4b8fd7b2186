"""Configuration: the ini file and the environment, parsed once.

Only this module reads ``shetphone.ini``, ``.env`` and ``os.environ``. Everything
else receives a frozen :class:`Settings`. Every mistake becomes one
:class:`ConfigError` whose ``str()`` names the file, the line or key, and what is
wrong, so a start-up failure is one readable line, never a traceback.

Each key of ``[shetphone]`` and ``[shetphone:bridge]`` is one entry of the key
table: a field of :class:`Settings` or :class:`BridgeSettings` made by :func:`key`
(section, key, parser, default, meaning). The loader, ``check-config``, the
README's tables (``python -m shetphone.config_docs``) and the test of
``shetphone.ini.example`` all read that table. This module parses and validates;
what the values mean for calls (the default countries, who calls from which
number) is the domain's (``dialing``, ``directory``).
"""

from __future__ import annotations

import configparser
import difflib
import io
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from dotenv import dotenv_values
from dotenv.parser import parse_stream

from . import phone_numbers

log = logging.getLogger(__name__)

MAX_CLIENTS_PER_NUMBER = 10  # Twilio rings at most ten <Client>s in one <Dial>
MAX_TOKEN_TTL = 86400  # Twilio refuses access tokens valid for longer than a day
MAX_SESSION_HOURS = 720  # 30 days: a login unused for longer is a forgotten one
MAX_PROXY_HOPS = 5  # more proxies than this in a chain is a mistake, not a deployment

TWILIO_VARIABLES = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_APP_SID",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
)
# Every variable read from the environment (or .env), for the README's table.
ENVIRONMENT_VARIABLES = (
    *TWILIO_VARIABLES, "SHETPHONE_SECRET_KEY", "SHETPHONE_CONFIG", "DISCORD_BOT_TOKEN", "DISCORD_BOT_TOKENS",
)

SECTION_MAIN = "shetphone"
SECTION_NUMBERS = "shetphone:numbers"
SECTION_CLIENTS = "shetphone:clients"
SECTION_BRIDGE = "shetphone:bridge"
SECTION_FORWARD = "shetphone:forward"
SECTION_EMAIL = "shetphone:email"
# Their keys are numbers or names, parsed below the table.
MAP_SECTIONS = {SECTION_NUMBERS, SECTION_CLIENTS, SECTION_FORWARD, SECTION_EMAIL}
FOREIGN_SECTIONS = {"uwsgi"}  # read by other programs; their keys are theirs

ANY_COUNTRY = "*"  # allowed_countries: every geographic region

# A client name becomes a Twilio identity and a user name: keep it to characters
# that are safe in both, in TwiML and in a Socket.IO room name.
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,120}$")
SNOWFLAKE = re.compile(r"^[0-9]{15,21}$")  # a Discord ID
LOOKS_LIKE_A_NUMBER = re.compile(r"^[0-9().-]{6,}$")  # an outside phone written without its +
INDENTED_KEY = re.compile(r"^([A-Za-z0-9_+][A-Za-z0-9_.@+-]*)\s*[=:]")  # a key = value line, once stripped


class ConfigError(Exception):
    """A configuration mistake: ``file:line: where: what`` on one line."""

    def __init__(self, file: str | os.PathLike[str], where: str, what: str, line: int | None = None):
        self.file = str(file)
        self.where = where
        self.what = what
        self.line = line
        super().__init__(str(self))

    def __str__(self) -> str:
        location = f"{self.file}:{self.line}" if self.line else self.file
        return f"{location}: {self.where}: {self.what}" if self.where else f"{location}: {self.what}"


# --------------------------------------------------------------------------- parsers
#
# A parser turns the text of one key into its value, or raises Invalid saying what is
# wrong; the loader adds the file, line, section and key. ``here`` is the directory
# of the ini file, against which relative paths are read.

Parser = Callable[[str, Path], Any]


class Invalid(ValueError):
    """What is wrong with one value, in words."""


BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}


def split_list(value: str) -> list[str]:
    """Lists in the ini are separated by spaces or commas."""
    return [item for item in re.split(r"[\s,]+", value.strip()) if item]


def whole(low: int, high: int, unit: str) -> Parser:
    def parse(text: str, here: Path) -> int:
        try:
            number = int(text)
        except ValueError:
            raise Invalid(f"{text!r} is not a whole number of {unit}") from None
        if not low <= number <= high:
            raise Invalid(f"{number} is out of range ({low} to {high} {unit})")
        return number

    return parse


def yes_no(text: str, here: Path) -> bool:
    try:
        return BOOLEANS[text.lower()]
    except KeyError:
        raise Invalid(f"{text!r} is not yes or no") from None


def words(text: str, here: Path) -> str:
    return text


def http_url(text: str, here: Path) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Invalid(f"{text!r} is not a URL starting with http:// or https://")
    if parts.query or parts.fragment:
        raise Invalid(f"{text!r} must not have a query or fragment")
    return text.rstrip("/")


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def file_path(text: str, here: Path) -> Path:
    return _resolve(here, text)


def sqlalchemy_url(text: str, here: Path) -> str:
    if "://" not in text:
        return f"sqlite:///{_resolve(here, text)}"
    if not text.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
        raise Invalid(f"{text!r} is not a path, a sqlite:/// URL or a postgresql:// URL")
    if text.startswith("postgresql://"):
        return "postgresql+psycopg://" + text.removeprefix("postgresql://")
    return text


def redis_url(text: str, here: Path) -> str:
    # Both users of the queue must understand it: Flask-SocketIO picks its Redis manager
    # only for redis:// and rediss:// (anything else it hands to kombu, which is not
    # installed), and `limits` (the login lockout) knows no unix:// scheme.
    parts = urlsplit(text)
    if parts.scheme == "unix" or parts.scheme.endswith("+unix"):
        raise Invalid(
            f"{text!r}: a Unix socket cannot be used (Socket.IO and the login lockout both need "
            "redis://HOST:PORT or rediss://HOST:PORT); let Redis listen on 127.0.0.1"
        )
    if parts.scheme not in ("redis", "rediss") or not parts.hostname:
        raise Invalid(f"{text!r} is not a redis:// or rediss:// URL (like redis://127.0.0.1:6379/0)")
    try:
        parts.port  # noqa: B018  (urlsplit checks the port only when asked)
    except ValueError:
        raise Invalid(f"{text!r} has a port that is not a number") from None
    if not re.fullmatch(r"/?[0-9]*", parts.path):
        # redis-py reads /x, /0/1 or /queue as database 0 without a word: another process's 0, maybe.
        raise Invalid(f"{text!r}: what follows the port must be a database number, like /0")
    return text


def region_codes(text: str, here: Path) -> frozenset[str]:
    codes = [code.upper() for code in split_list(text)]
    for code in codes:
        if code != ANY_COUNTRY and not phone_numbers.is_region(code):
            raise Invalid(
                f"{code!r} is not an ISO 3166 region code (nor {phone_numbers.NON_GEOGRAPHIC}, the non-geographic "
                "numbers, nor *)"
            )
    if ANY_COUNTRY in codes and set(codes) - {ANY_COUNTRY, phone_numbers.NON_GEOGRAPHIC}:
        raise Invalid(f"* is every country already; only {phone_numbers.NON_GEOGRAPHIC} may be listed beside it")
    return frozenset(codes)


def smtp_url(text: str, here: Path) -> str:
    from .mail import SmtpConfig  # the one reader of the URL; its messages never echo the password

    try:
        SmtpConfig.from_url(text)
    except ValueError as exc:
        raise Invalid(str(exc)) from None
    return text


MAIL_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+$")


def mail_address(text: str, here: Path) -> str:
    """``phone@example.org`` or ``Shetphone <phone@example.org>``."""
    from email.utils import parseaddr

    _, address = parseaddr(text)
    if not MAIL_ADDRESS.match(address):
        raise Invalid(f"{text!r} is not an e-mail address (like Shetphone <phone@example.org>)")
    return text


def host_port(text: str, here: Path) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host:
        raise Invalid(f"{text!r} is not HOST:PORT")
    return host.strip("[]"), whole(1, 65535, "port")(port, here)


def discord_id(text: str, here: Path) -> int:
    if not SNOWFLAKE.match(text):
        raise Invalid(f"{text!r} is not a Discord channel ID (15 to 21 digits)")
    return int(text)


def discord_role_ids(text: str, here: Path) -> frozenset[int]:
    ids = split_list(text)
    for item in ids:
        if not SNOWFLAKE.match(item):
            raise Invalid(f"{item!r} is not a Discord role ID (15 to 21 digits)")
    return frozenset(int(item) for item in ids)


def e164(text: str, here: Path) -> str:
    try:
        return phone_numbers.parse_e164(text)
    except phone_numbers.InvalidNumber as exc:
        raise Invalid(str(exc)) from None


# --------------------------------------------------------------------------- the key table


@dataclass(frozen=True)
class Key:
    """One ini key: where it is, how its text is read, its default and what it means."""

    section: str
    name: str
    parse: Parser
    default: str | None  # text, read like a written value; None: the value is None when unset
    meaning: str  # the README's words (reStructuredText)
    required: bool = False
    old_names: tuple[str, ...] = ()  # still read, with a warning
    unset: str = ""  # what leaving out a key without a default means, in words (empty: nothing)
    secret: bool = False  # may hold a password: kept out of reprs and check-config's output
    attribute: str = ""  # the dataclass field; filled in by table_of()


def key(
    section: str,
    name: str,
    parse: Parser,
    default: str | None,
    meaning: str,
    **options: Any,
) -> Any:
    """A dataclass field that is one row of the key table; see :class:`Key` for the options."""
    row = Key(section, name, parse, default, meaning, **options)
    return field(metadata={"key": row}, repr=not row.secret)


def table_of(cls: type) -> tuple[Key, ...]:
    """The rows of the key table that are fields of ``cls``, in their order."""
    return tuple(replace(f.metadata["key"], attribute=f.name) for f in fields(cls) if "key" in f.metadata)


@dataclass(frozen=True)
class NumberTarget:
    """Where an incoming call to one of the team's Twilio numbers goes."""

    kind: str  # "clients", "discord" or "echo"
    clients: tuple[str, ...] = ()
    discord_channel: int | None = None
    outside_numbers: tuple[str, ...] = ()  # E.164 phones rung with the clients (SPEC §7)

    @property
    def stream_target(self) -> str | None:
        """The Media Streams ``target`` parameter, for the bridge's targets."""
        if self.kind == "discord":
            return f"discord:{self.discord_channel}"
        if self.kind == "echo":
            return "echo"
        return None


@dataclass(frozen=True)
class TwilioSettings:
    account_sid: str = ""
    auth_token: str = field(default="", repr=False)
    app_sid: str = ""
    api_key: str = ""
    api_secret: str = field(default="", repr=False)

    @property
    def missing(self) -> tuple[str, ...]:
        """The names of the Twilio variables that are not set."""
        values = (self.account_sid, self.auth_token, self.app_sid, self.api_key, self.api_secret)
        return tuple(name for name, value in zip(TWILIO_VARIABLES, values, strict=True) if not value)

    @property
    def configured(self) -> bool:
        return not self.missing


@dataclass(frozen=True, kw_only=True)
class BridgeSettings:
    # [shetphone:bridge], one entry per key: (section, key, parser, default, meaning).
    listen: tuple[str, int] = key(
        SECTION_BRIDGE, "listen", host_port, "127.0.0.1:5001",
        "``HOST:PORT`` where the media bridge takes Twilio's Media Streams")
    text_channel: int | None = key(
        SECTION_BRIDGE, "text_channel", discord_id, None, "a Discord text channel told when calls start and end")
    max_calls: int = key(
        SECTION_BRIDGE, "max_calls", whole(1, 10000, "calls"), "100", "streams at once; more are refused")
    max_call_minutes: int = key(
        SECTION_BRIDGE, "max_call_minutes", whole(1, 10080, "minutes"), "240", "a stream is ended after this long")
    call_roles: frozenset[int] | None = key(
        SECTION_BRIDGE, "call_roles", discord_role_ids, None,
        "Discord role IDs whose members may use ``/call`` and ``/hangup``", unset="nobody")
    call_from: str | None = key(
        SECTION_BRIDGE, "call_from", e164, None,
        "the number of ``[shetphone:numbers]`` that calls placed from Discord come from", unset="no calls from Discord")

    @property
    def call_role_ids(self) -> frozenset[int]:
        return self.call_roles or frozenset()

    @property
    def host(self) -> str:
        return self.listen[0]

    @property
    def port(self) -> int:
        return self.listen[1]


@dataclass(frozen=True, kw_only=True)
class Settings:
    # [shetphone], one entry per key: (section, key, parser, default, meaning). An empty
    # value is the default.
    public_url: str = key(
        SECTION_MAIN, "public_url", http_url, None, "the base URL Twilio calls; signatures are checked against it",
        required=True)
    htpasswd_path: Path = key(SECTION_MAIN, "htpasswd", file_path, ".htpasswd", "the users")
    presets_path: Path = key(SECTION_MAIN, "presets", file_path, "presets.csv", "the presets")
    allowed_countries: frozenset[str] | None = key(
        SECTION_MAIN, "allowed_countries", region_codes, None,
        "ISO 3166 regions users may dial; ``*`` for all but ``001`` (non-geographic ``+8xx``), which must be "
        "listed", unset="regions of every number")
    allow_premium: bool = key(
        SECTION_MAIN, "allow_premium", yes_no, "no",
        "``yes`` dials premium rate, shared cost, personal, UAN, VoIP and other special numbers too")
    ring_timeout: int = key(
        SECTION_MAIN, "ring_timeout", whole(5, 600, "seconds"), "20", "seconds an incoming call rings before voicemail")
    voicemail: bool = key(SECTION_MAIN, "voicemail", yes_no, "yes", "record a message when nobody answers")
    voicemail_greeting: str = key(
        SECTION_MAIN, "voicemail_greeting", words,
        "Sorry, nobody can take your call. Please leave a message after the tone.", "the spoken greeting")
    voicemail_greeting_url: str | None = key(
        SECTION_MAIN, "voicemail_greeting_url", http_url, None, "an audio file to play instead")
    keep_days: int = key(
        SECTION_MAIN, "keep_days", whole(1, 36500, "days"), "90", "call log rows older than this are pruned")
    token_ttl: int = key(
        SECTION_MAIN, "token_ttl", whole(60, MAX_TOKEN_TTL, "seconds"), "3600",
        f"seconds an access token lives; at most {MAX_TOKEN_TTL}")
    database_url: str = key(
        SECTION_MAIN, "database", sqlalchemy_url, "instance/shetphone.sqlite3",
        "a path, a ``sqlite:///`` URL or ``postgresql://user:pass@host/db``", secret=True)
    message_queue: str | None = key(
        SECTION_MAIN, "message_queue", redis_url, None,
        "``redis://127.0.0.1:6379/0`` (or ``rediss://``) when several processes serve", secret=True)
    # 0 where nothing is in front (`make run`): trusting X-Forwarded-For there would let
    # anyone pick the address the login lockout counts against.
    proxy_hops: int = key(
        SECTION_MAIN, "proxy_hops", whole(0, MAX_PROXY_HOPS, "proxies"), "0",
        "reverse proxies in front whose X-Forwarded-* headers are trusted (1 behind nginx)")
    session_hours: int = key(
        SECTION_MAIN, "session_hours", whole(1, MAX_SESSION_HOURS, "hours"), "12",
        f"a login lasts this long without use (sliding); at most {MAX_SESSION_HOURS}")
    twilio_api_base: str = key(
        SECTION_MAIN, "twilio_api_base", http_url, "https://api.twilio.com",
        "Twilio's REST API: recordings, call control, calls from Discord; ``twilio_media_base`` (its old "
        "name) is read too", old_names=("twilio_media_base",))
    hold_music_url: str | None = key(
        SECTION_MAIN, "hold_music_url", http_url, None, "what a held caller hears (MP3, WAV or TwiML)",
        unset="Twilio's default music")
    voicemail_transcribe: bool = key(
        SECTION_MAIN, "voicemail_transcribe", yes_no, "no",
        "``yes``: Twilio transcribes each voicemail; the page and the e-mail show the text")
    smtp_url: str | None = key(
        SECTION_MAIN, "smtp_url", smtp_url, None,
        "``smtp://user:pass@host:587`` (STARTTLS when offered) or ``smtps://user:pass@host:465``: voicemail by "
        "e-mail to the addresses in ``[shetphone:email]``", secret=True, unset="no e-mail")
    mail_from: str | None = key(
        SECTION_MAIN, "mail_from", mail_address, None,
        "the sender of voicemail e-mail, e.g. ``Shetphone <phone@example.org>``; needed with ``smtp_url``")
    presence_ttl: int = key(
        SECTION_MAIN, "presence_ttl", whole(1, 60, "seconds"), "45",
        "with ``message_queue``: seconds a browser still counts as available after its process died (a clean "
        "stop: none)")

    # Not keys of the table: where things are, the map sections, the environment.
    config_path: Path
    instance_path: Path
    numbers: Mapping[str, NumberTarget]
    clients: Mapping[str, tuple[str, ...]] | None  # None: no [shetphone:clients] (the Directory reads numbers)
    bridge: BridgeSettings
    twilio: TwilioSettings
    secret_key: str = field(repr=False)
    discord_bot_token: str | None = field(default=None, repr=False)
    # DISCORD_BOT_TOKENS, then DISCORD_BOT_TOKEN if it is not among them: the bridge's bots, in order.
    discord_bot_tokens: tuple[str, ...] = field(default=(), repr=False)
    # (section, key) -> the text written in the file, for check-config; unset keys are absent.
    written: Mapping[tuple[str, str], str] = field(default_factory=lambda: MappingProxyType({}), repr=False)
    forward: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))  # user -> E.164 (SPEC §7)
    email: Mapping[str, tuple[str, ...]] = field(default_factory=lambda: MappingProxyType({}))  # user -> addresses
    # (section, key) -> its line in the file, for the map sections: checks made later still name the line.
    lines: Mapping[tuple[str, str], int] = field(default_factory=lambda: MappingProxyType({}), repr=False)

    @property
    def public_host(self) -> str:
        """Host and port (if any) of ``public_url``: where Twilio opens Media Streams."""
        return urlsplit(self.public_url).netloc

    @property
    def public_path(self) -> str:
        """The path of ``public_url``: ``/`` at the root, ``/shetphone`` under a prefix (the cookie's Path)."""
        return urlsplit(self.public_url).path or "/"

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")

    @property
    def mail_configured(self) -> bool:
        return bool(self.smtp_url and self.mail_from)

    def config_error(self, section: str, key: str, what: str) -> ConfigError:
        """A mistake in a map section's entry found after loading (the dialing policy's): still its line."""
        return ConfigError(self.config_path, f"[{section}] {key}", what, self.lines.get((section, key)))


KEYS: tuple[Key, ...] = table_of(Settings) + table_of(BridgeSettings)
KEYED_SECTIONS = {row.section for row in KEYS}


# --------------------------------------------------------------------------- reading the ini


def read_utf8(path: Path) -> str:
    """A text file, without the byte-order mark some editors write first (configparser would take it for
    a key); :class:`ConfigError` names the line of a byte that is not UTF-8. FileNotFoundError is the caller's."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise
    except OSError as exc:
        raise ConfigError(path, "", f"cannot be read: {exc.strerror}") from None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        what = f"byte 0x{data[exc.start]:02x} is not UTF-8; save the file as UTF-8"
        raise ConfigError(path, "", what, line) from None


class _Ini:
    """A parsed ini file that remembers on which line each section and key stands."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = read_utf8(path)
        except FileNotFoundError:
            raise ConfigError(path, "", "file not found (copy shetphone.ini.example to start)") from None
        parser = configparser.ConfigParser(
            interpolation=None,
            inline_comment_prefixes=(";", "#"),
            strict=True,
            empty_lines_in_values=False,
        )
        parser.optionxform = str  # keys are case-sensitive: client names are
        try:
            parser.read_string(text, source=str(path))
        except configparser.DuplicateOptionError as exc:
            raise ConfigError(path, f"[{exc.section}] {exc.option}", "appears twice", exc.lineno) from None
        except configparser.DuplicateSectionError as exc:
            raise ConfigError(path, f"[{exc.section}]", "section appears twice", exc.lineno) from None
        except configparser.MissingSectionHeaderError as exc:
            raise ConfigError(path, "", "a key comes before any [section]", exc.lineno) from None
        except configparser.ParsingError as exc:
            lineno = exc.errors[0][0] if exc.errors else None
            what = "this line is neither a [section], a key = value nor a comment"
            raise ConfigError(path, "", what, lineno) from None
        self.parser = parser
        self.lines = self._index(text)
        self._refuse_indented_keys()

    def _refuse_indented_keys(self) -> None:
        """An indented ``key = value`` continues the value above (configparser's multi-line values): the key
        is lost and the value above gets a line of garbage, reported against the wrong key, or not at all."""
        for section in self.parser.sections():
            if section in FOREIGN_SECTIONS:
                continue
            for key, value in self.parser.items(section, raw=True):
                for offset, piece in enumerate(value.splitlines()[1:], start=1):
                    looks_like = INDENTED_KEY.match(piece.strip())
                    if looks_like and (section in MAP_SECTIONS or looks_like[1] in {row.name for row in KEYS}):
                        line = self.lines.get((section, key))
                        raise ConfigError(
                            self.path, f"[{section}] {looks_like[1]}",
                            f"is indented, so it continues the value of {key} above; remove the spaces before it",
                            line + offset if line else None)

    @staticmethod
    def _index(text: str) -> dict[tuple[str, str | None], int]:
        lines: dict[tuple[str, str | None], int] = {}
        section = None
        for number, raw in enumerate(text.splitlines(), start=1):
            line = raw.strip()
            if not line or line[0] in ";#":
                continue
            if line.startswith("[") and "]" in line:
                section = line[1 : line.index("]")].strip()
                lines[(section, None)] = number
            elif section is not None and not raw[:1].isspace():
                key = re.split(r"[=:]", line, maxsplit=1)[0].strip()
                lines.setdefault((section, key), number)
        return lines

    def error(self, section: str, key: str | None, what: str) -> ConfigError:
        where = f"[{section}] {key}" if key is not None else f"[{section}]"
        return ConfigError(self.path, where, what, self.lines.get((section, key)))

    def sections(self) -> list[str]:
        return self.parser.sections()

    def items(self, section: str) -> list[tuple[str, str]]:
        if not self.parser.has_section(section):
            return []
        return [(key, value.strip()) for key, value in self.parser.items(section, raw=True)]


def _read_keys(ini: _Ini, cls: type, written: dict[tuple[str, str], str]) -> dict[str, Any]:
    """The values of ``cls``'s rows of the key table, by attribute; fills ``written``."""
    here = ini.path.parent
    sections: dict[str, dict[str, str]] = {}
    values: dict[str, Any] = {}
    for row in table_of(cls):
        given = sections.setdefault(row.section, dict(ini.items(row.section)))
        names = [name for name in (row.name, *row.old_names) if name in given]
        if len(names) > 1:
            raise ini.error(row.section, names[1], f"is the old name of {row.name}, which is set too; keep one")
        name = names[0] if names else row.name
        if name != row.name:
            log.warning("%s: [%s] %s is now called %s; rename it", ini.path, row.section, name, row.name)
        text = given.get(name, "")
        if text:
            written[(row.section, row.name)] = text
        elif row.required:
            raise ini.error(row.section, name if name in given else None, f"{row.name} is required")
        else:
            text = row.default
        try:
            values[row.attribute] = None if text is None else row.parse(text, here)
        except Invalid as exc:
            raise ini.error(row.section, name, str(exc)) from None
    return values


def _did_you_mean(name: str, known: set[str], shown: str = "{}") -> str:
    """`` (did you mean X?)`` for a typo of a known name, else nothing."""
    close = difflib.get_close_matches(name, sorted(known), n=1, cutoff=0.75) or [
        k for k in sorted(known) if k.lower() == name.lower()]
    return f" (did you mean {shown.format(close[0])}?)" if close else ""


def _check_sections_and_keys(ini: _Ini) -> None:
    sections = KEYED_SECTIONS | MAP_SECTIONS | FOREIGN_SECTIONS
    for section in ini.sections():
        if section not in sections:
            prefixed = f"{SECTION_MAIN}:{section}"  # [forward] for [shetphone:forward]
            hint = _did_you_mean(prefixed if prefixed in sections else section, sections, "[{}]")
            raise ini.error(section, None, "unknown section" + hint)
    if SECTION_MAIN not in ini.sections():
        raise ConfigError(ini.path, f"[{SECTION_MAIN}]", "section is missing")
    for section in KEYED_SECTIONS:
        known = {name for row in KEYS if row.section == section for name in (row.name, *row.old_names)}
        for name, _ in ini.items(section):
            if name in known:
                continue
            elsewhere = [row.section for row in KEYS if row.name == name]
            if elsewhere:
                raise ini.error(section, name, f"belongs in [{elsewhere[0]}], not in [{section}]")
            raise ini.error(section, name, "unknown key" + _did_you_mean(name, known))


def _e164(ini: _Ini, section: str, key: str, text: str) -> str:
    try:
        return phone_numbers.parse_e164(text)
    except phone_numbers.InvalidNumber as exc:
        raise ini.error(section, key, str(exc)) from None


def _client_name(ini: _Ini, section: str, key: str, name: str) -> str:
    if not CLIENT_NAME.match(name):
        raise ini.error(section, key, f"{name!r} is not a valid client name (letters, digits, _ . @ -)")
    return name


def _number_target(ini: _Ini, number: str, value: str) -> NumberTarget:
    items = split_list(value)
    if not items:
        raise ini.error(SECTION_NUMBERS, number, "names no clients, discord:CHANNEL_ID or echo")
    if len(items) == 1 and items[0] == "echo":
        return NumberTarget(kind="echo")
    if len(items) == 1 and items[0].startswith("discord:"):
        try:
            channel = discord_id(items[0].removeprefix("discord:"), ini.path.parent)
        except Invalid as exc:
            raise ini.error(SECTION_NUMBERS, number, str(exc)) from None
        return NumberTarget(kind="discord", discord_channel=channel)
    clients: list[str] = []
    outside: list[str] = []
    for item in items:
        if item == "echo" or item.startswith("discord:"):
            raise ini.error(SECTION_NUMBERS, number, f"{item} cannot be mixed with other targets")
        if item.startswith("+"):  # an outside phone, rung with the clients
            outside.append(_e164(ini, SECTION_NUMBERS, number, item))
        elif LOOKS_LIKE_A_NUMBER.match(item):
            raise ini.error(SECTION_NUMBERS, number, f"{item!r} looks like a phone number: write outside phones in "
                            "E.164, like +447400123456")
        else:
            clients.append(_client_name(ini, SECTION_NUMBERS, number, item))
    if len(set(clients)) != len(clients):
        raise ini.error(SECTION_NUMBERS, number, "names a client twice")
    if len(set(outside)) != len(outside):
        raise ini.error(SECTION_NUMBERS, number, "names an outside phone twice")
    if len(items) > MAX_CLIENTS_PER_NUMBER:
        raise ini.error(
            SECTION_NUMBERS, number,
            f"rings {len(items)} clients and phones; Twilio rings at most {MAX_CLIENTS_PER_NUMBER}",
        )
    return NumberTarget(kind="clients", clients=tuple(clients), outside_numbers=tuple(outside))


def _numbers(ini: _Ini) -> dict[str, NumberTarget]:
    return {_e164(ini, SECTION_NUMBERS, number, number): _number_target(ini, number, value)
            for number, value in ini.items(SECTION_NUMBERS)}


def _forward(ini: _Ini) -> dict[str, str]:
    forward: dict[str, str] = {}
    for name, value in ini.items(SECTION_FORWARD):
        _client_name(ini, SECTION_FORWARD, name, name)
        items = split_list(value)
        if len(items) != 1:
            raise ini.error(SECTION_FORWARD, name, "names one phone number (E.164), like +447400123456")
        forward[name] = _e164(ini, SECTION_FORWARD, name, items[0])
    return forward


def _email(ini: _Ini) -> dict[str, tuple[str, ...]]:
    email: dict[str, tuple[str, ...]] = {}
    for name, value in ini.items(SECTION_EMAIL):
        _client_name(ini, SECTION_EMAIL, name, name)
        addresses = split_list(value)
        if not addresses:
            raise ini.error(SECTION_EMAIL, name, "names no e-mail address")
        for address in addresses:
            if not MAIL_ADDRESS.match(address):
                raise ini.error(SECTION_EMAIL, name, f"{address!r} is not an e-mail address (like alice@example.org)")
        email[name] = tuple(dict.fromkeys(addresses))
    return email


def _clients(ini: _Ini) -> dict[str, tuple[str, ...]] | None:
    if SECTION_CLIENTS not in ini.sections():
        return None
    clients: dict[str, tuple[str, ...]] = {}
    for name, value in ini.items(SECTION_CLIENTS):
        _client_name(ini, SECTION_CLIENTS, name, name)
        caller_ids = tuple(_e164(ini, SECTION_CLIENTS, name, item) for item in split_list(value))
        if not caller_ids:
            raise ini.error(SECTION_CLIENTS, name, "names no caller ID")
        if len(set(caller_ids)) != len(caller_ids):
            raise ini.error(SECTION_CLIENTS, name, "names a caller ID twice")
        clients[name] = caller_ids
    return clients


# --------------------------------------------------------------------------- the environment


def _read_secret_key(key_path: Path) -> str | None:
    try:
        key = key_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ConfigError(key_path, "", f"cannot be read: {exc.strerror}") from None
    if not key:
        # Sessions signed with an empty key could be forged by anyone.
        raise ConfigError(
            key_path, "", "is empty; delete it to have a new key made (everyone logs in again), "
            "or set SHETPHONE_SECRET_KEY"
        )
    return key


def _discord_bot_tokens(path: Path, environ: Mapping[str, str]) -> tuple[str, ...]:
    """DISCORD_BOT_TOKENS (comma-separated), with a single DISCORD_BOT_TOKEN as a pool of one."""
    tokens: list[str] = []
    text = environ.get("DISCORD_BOT_TOKENS") or ""
    if text.strip():
        for n, token in enumerate((t.strip() for t in text.split(",")), 1):
            if not token:
                raise ConfigError(path, "DISCORD_BOT_TOKENS", f"entry {n} is empty (tokens are separated by commas)")
            if token in tokens:
                raise ConfigError(path, "DISCORD_BOT_TOKENS", f"entry {n} repeats entry {tokens.index(token) + 1}")
            tokens.append(token)
    single = (environ.get("DISCORD_BOT_TOKEN") or "").strip()
    if single and single not in tokens:
        tokens.append(single)
    return tuple(tokens)


def _load_secret_key(instance_path: Path, environ: Mapping[str, str]) -> str:
    """``SHETPHONE_SECRET_KEY``, else one generated once into ``instance/secret_key``."""
    if environ.get("SHETPHONE_SECRET_KEY"):
        return environ["SHETPHONE_SECRET_KEY"]
    key_path = instance_path / "secret_key"
    existing = _read_secret_key(key_path)
    if existing is not None:
        return existing
    key = secrets.token_hex(32)
    try:
        instance_path.mkdir(parents=True, exist_ok=True)
        # Written whole into a temporary file (mode 0600), then linked into place: a crash
        # leaves no empty key behind, and link() fails when another process starting at
        # the same moment was first, whose key then wins.
        fd, temporary = tempfile.mkstemp(dir=instance_path, prefix=".secret_key.")
        try:
            try:
                os.write(fd, (key + "\n").encode())
                os.fsync(fd)
            finally:
                os.close(fd)
            os.link(temporary, key_path)
        finally:
            os.unlink(temporary)
    except FileExistsError:
        theirs = _read_secret_key(key_path)
        if theirs is None:
            raise ConfigError(key_path, "", "vanished while being created; start again") from None
        return theirs
    except OSError as exc:
        raise ConfigError(key_path, "", f"cannot be created: {exc.strerror}") from None
    return key


def read_environment(root: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment over ``.env`` beside ``app.py`` (the real environment wins)."""
    merged: dict[str, str] = {}
    dotenv = root / ".env"
    if dotenv.is_file():
        text = read_utf8(dotenv)
        # python-dotenv skips a line it cannot parse with a warning naming no file: a variable
        # lost that way would show up later as "Twilio is not configured", far from its typo.
        for binding in parse_stream(io.StringIO(text)):
            if binding.error:
                written = binding.original.string
                line = binding.original.line + written[: len(written) - len(written.lstrip())].count("\n")
                raise ConfigError(dotenv, "", "is not NAME=value (nor a # comment)", line)
        merged.update({k: v for k, v in dotenv_values(stream=io.StringIO(text)).items() if v is not None})
    merged.update(os.environ if environ is None else environ)
    return merged


def config_path(root: Path, environ: Mapping[str, str]) -> Path:
    return _resolve(root, environ.get("SHETPHONE_CONFIG") or "shetphone.ini")


def load_settings(root: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> Settings:
    """Read ``.env``, the environment and the ini file into :class:`Settings`.

    ``root`` is the directory of ``app.py``; ``environ`` defaults to ``os.environ``.
    Raises :class:`ConfigError` on the first mistake.
    """
    root = Path(root).resolve()
    env = read_environment(root, environ)
    path = config_path(root, env)
    ini = _Ini(path)
    _check_sections_and_keys(ini)
    written: dict[tuple[str, str], str] = {}
    main = _read_keys(ini, Settings, written)
    bridge = BridgeSettings(**_read_keys(ini, BridgeSettings, written))
    if main["smtp_url"] and not main["mail_from"]:
        raise ini.error(SECTION_MAIN, "smtp_url", "is set, but mail_from is not: voicemail e-mail needs a sender")
    numbers = _numbers(ini)
    clients = _clients(ini)
    if bridge.call_from is not None and bridge.call_from not in numbers:
        # Twilio places a call only from a number of the account, and the call log
        # opens a call from its callbacks only when a team number is in them.
        raise ini.error(SECTION_BRIDGE, "call_from", f"{bridge.call_from} is not a number of [{SECTION_NUMBERS}]")
    instance_path = root / "instance"
    return Settings(
        **main,
        config_path=path,
        instance_path=instance_path,
        numbers=MappingProxyType(numbers),
        clients=MappingProxyType(clients) if clients is not None else None,
        bridge=bridge,
        twilio=TwilioSettings(
            account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
            app_sid=env.get("TWILIO_APP_SID", ""),
            api_key=env.get("TWILIO_API_KEY", ""),
            api_secret=env.get("TWILIO_API_SECRET", ""),
        ),
        secret_key=_load_secret_key(instance_path, env),
        discord_bot_token=env.get("DISCORD_BOT_TOKEN") or None,
        discord_bot_tokens=_discord_bot_tokens(path, env),
        written=MappingProxyType(written),
        forward=MappingProxyType(_forward(ini)),
        email=MappingProxyType(_email(ini)),
        lines=MappingProxyType({(section, key): line for (section, key), line in ini.lines.items()
                                if section in MAP_SECTIONS and key is not None}),
    )
