"""Configuration: the ini file and the environment, parsed once.

Only this module reads ``shetphone.ini``, ``.env`` and ``os.environ``. Everything
else receives a frozen :class:`Settings`. Every mistake becomes one
:class:`ConfigError` whose ``str()`` names the file, the line or key, and what is
wrong, so a start-up failure is one readable line, never a traceback.
"""

from __future__ import annotations

import configparser
import os
import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from urllib.parse import urlsplit

import phonenumbers
from dotenv import dotenv_values

MAX_CLIENTS_PER_NUMBER = 10  # Twilio rings at most ten <Client>s in one <Dial>
MAX_TOKEN_TTL = 86400  # Twilio refuses access tokens valid for longer than a day
MAX_PROXY_HOPS = 5  # more proxies than this in a chain is a mistake, not a deployment

TWILIO_VARIABLES = (
    "TWILIO_ACCOUNT_SID",
    "TWILIO_AUTH_TOKEN",
    "TWILIO_APP_SID",
    "TWILIO_API_KEY",
    "TWILIO_API_SECRET",
)

# A client name becomes a Twilio identity and a user name: keep it to characters
# that are safe in both, in TwiML and in a Socket.IO room name.
CLIENT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,120}$")


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


@dataclass(frozen=True)
class NumberTarget:
    """Where an incoming call to one of the team's Twilio numbers goes."""

    kind: str  # "clients", "discord" or "echo"
    clients: tuple[str, ...] = ()
    discord_channel: int | None = None

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
    auth_token: str = ""
    app_sid: str = ""
    api_key: str = ""
    api_secret: str = ""

    @property
    def missing(self) -> tuple[str, ...]:
        """The names of the Twilio variables that are not set."""
        values = (self.account_sid, self.auth_token, self.app_sid, self.api_key, self.api_secret)
        return tuple(name for name, value in zip(TWILIO_VARIABLES, values, strict=True) if not value)

    @property
    def configured(self) -> bool:
        return not self.missing


@dataclass(frozen=True)
class BridgeSettings:
    host: str = "127.0.0.1"
    port: int = 5001
    text_channel: int | None = None


@dataclass(frozen=True)
class Settings:
    config_path: Path
    public_url: str
    htpasswd_path: Path
    presets_path: Path
    allowed_countries: frozenset[str] | None  # None means every region ("*")
    allow_premium: bool
    ring_timeout: int
    voicemail: bool
    voicemail_greeting: str
    voicemail_greeting_url: str | None
    keep_days: int
    token_ttl: int
    database_url: str
    message_queue: str | None
    numbers: Mapping[str, NumberTarget]
    clients: Mapping[str, tuple[str, ...]]
    bridge: BridgeSettings
    twilio: TwilioSettings
    secret_key: str
    instance_path: Path
    discord_bot_token: str | None = None
    # DISCORD_BOT_TOKENS, then DISCORD_BOT_TOKEN if it is not among them: the bridge's bots, in order.
    discord_bot_tokens: tuple[str, ...] = ()
    twilio_media_base: str = "https://api.twilio.com"
    proxy_hops: int = 0  # reverse proxies in front whose X-Forwarded-* headers are trusted

    @property
    def public_host(self) -> str:
        """Host and port (if any) of ``public_url``: where Twilio opens Media Streams."""
        return urlsplit(self.public_url).netloc

    @property
    def secure_cookies(self) -> bool:
        return self.public_url.startswith("https://")


# --------------------------------------------------------------------------- parsing

SECTION_MAIN = "shetphone"
SECTION_NUMBERS = "shetphone:numbers"
SECTION_CLIENTS = "shetphone:clients"
SECTION_BRIDGE = "shetphone:bridge"
FOREIGN_SECTIONS = {"uwsgi"}  # read by other programs; their keys are theirs
MAIN_KEYS = {
    "public_url",
    "htpasswd",
    "presets",
    "allowed_countries",
    "allow_premium",
    "ring_timeout",
    "voicemail",
    "voicemail_greeting",
    "voicemail_greeting_url",
    "keep_days",
    "token_ttl",
    "database",
    "message_queue",
    "twilio_media_base",
    "proxy_hops",
}
BRIDGE_KEYS = {"listen", "text_channel"}
BOOLEANS = {"yes": True, "true": True, "on": True, "1": True, "no": False, "false": False, "off": False, "0": False}
SNOWFLAKE = re.compile(r"^[0-9]{15,21}$")  # a Discord ID


def split_list(value: str) -> list[str]:
    """Lists in the ini are separated by spaces or commas."""
    return [item for item in re.split(r"[\s,]+", value.strip()) if item]


class _Ini:
    """A parsed ini file that remembers on which line each section and key stands."""

    def __init__(self, path: Path):
        self.path = path
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ConfigError(path, "", "file not found (copy shetphone.ini.example to start)") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(path, "", f"cannot be read: {exc}") from None
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
        self._lines = self._index(text)

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
        return ConfigError(self.path, where, what, self._lines.get((section, key)))

    def sections(self) -> list[str]:
        return self.parser.sections()

    def items(self, section: str) -> list[tuple[str, str]]:
        if not self.parser.has_section(section):
            return []
        return [(key, value.strip()) for key, value in self.parser.items(section, raw=True)]


def _parse_e164(ini: _Ini, section: str, key: str, text: str) -> str:
    try:
        parsed = phonenumbers.parse(text, None)
    except phonenumbers.NumberParseException:
        parsed = None
    if parsed is None or not text.startswith("+") or not phonenumbers.is_valid_number(parsed):
        raise ini.error(section, key, f"{text!r} is not a valid phone number in E.164 form (like +441595000001)")
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if e164 != text:
        raise ini.error(section, key, f"{text!r} is not in E.164 form; write {e164}")
    return e164


def _parse_client_name(ini: _Ini, section: str, key: str, name: str) -> str:
    if not CLIENT_NAME.match(name):
        raise ini.error(section, key, f"{name!r} is not a valid client name (letters, digits, _ . @ -)")
    return name


def _parse_number_target(ini: _Ini, number: str, value: str) -> NumberTarget:
    items = split_list(value)
    if not items:
        raise ini.error(SECTION_NUMBERS, number, "names no clients, discord:CHANNEL_ID or echo")
    if len(items) == 1 and items[0] == "echo":
        return NumberTarget(kind="echo")
    if len(items) == 1 and items[0].startswith("discord:"):
        channel = items[0].removeprefix("discord:")
        if not SNOWFLAKE.match(channel):
            raise ini.error(SECTION_NUMBERS, number, f"{channel!r} is not a Discord channel ID (15 to 21 digits)")
        return NumberTarget(kind="discord", discord_channel=int(channel))
    for item in items:
        if item == "echo" or item.startswith("discord:"):
            raise ini.error(SECTION_NUMBERS, number, f"{item} cannot be mixed with other targets")
        _parse_client_name(ini, SECTION_NUMBERS, number, item)
    if len(set(items)) != len(items):
        raise ini.error(SECTION_NUMBERS, number, "names a client twice")
    if len(items) > MAX_CLIENTS_PER_NUMBER:
        raise ini.error(
            SECTION_NUMBERS, number, f"rings {len(items)} clients; Twilio rings at most {MAX_CLIENTS_PER_NUMBER}"
        )
    return NumberTarget(kind="clients", clients=tuple(items))


def _parse_int(ini: _Ini, section: str, key: str, value: str, low: int, high: int, unit: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise ini.error(section, key, f"{value!r} is not a whole number of {unit}") from None
    if not low <= number <= high:
        raise ini.error(section, key, f"{number} is out of range ({low} to {high} {unit})")
    return number


def _parse_bool(ini: _Ini, section: str, key: str, value: str) -> bool:
    try:
        return BOOLEANS[value.lower()]
    except KeyError:
        raise ini.error(section, key, f"{value!r} is not yes or no") from None


def _parse_url(ini: _Ini, section: str, key: str, value: str, schemes: tuple[str, ...]) -> str:
    parts = urlsplit(value)
    if parts.scheme not in schemes or not parts.netloc:
        raise ini.error(section, key, f"{value!r} is not a URL starting with {' or '.join(s + '://' for s in schemes)}")
    if parts.query or parts.fragment:
        raise ini.error(section, key, f"{value!r} must not have a query or fragment")
    return value.rstrip("/")


def _resolve(base: Path, value: str) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() else (base / path)


def _database_url(base: Path, value: str) -> str:
    if "://" in value:
        if not value.startswith(("sqlite:///", "postgresql://", "postgresql+psycopg://")):
            raise ValueError(f"{value!r} is not a path, a sqlite:/// URL or a postgresql:// URL")
        if value.startswith("postgresql://"):
            value = "postgresql+psycopg://" + value.removeprefix("postgresql://")
        return value
    return f"sqlite:///{_resolve(base, value)}"


def _parse_listen(ini: _Ini, value: str) -> tuple[str, int]:
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        raise ini.error(SECTION_BRIDGE, "listen", f"{value!r} is not HOST:PORT")
    port_number = _parse_int(ini, SECTION_BRIDGE, "listen", port, 1, 65535, "port")
    return host.strip("[]"), port_number


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
    try:
        existing = key_path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        existing = ""
    except OSError as exc:
        raise ConfigError(key_path, "", f"cannot be read: {exc.strerror}") from None
    if existing:
        return existing
    key = secrets.token_hex(32)
    try:
        instance_path.mkdir(parents=True, exist_ok=True)
        # O_EXCL: two processes starting at once must not each write their own key.
        fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return key_path.read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(key_path, "", f"cannot be created: {exc.strerror}") from None
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key + "\n")
    return key


def read_environment(root: Path, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The process environment over ``.env`` beside ``app.py`` (the real environment wins)."""
    merged: dict[str, str] = {}
    dotenv = root / ".env"
    if dotenv.is_file():
        merged.update({k: v for k, v in dotenv_values(dotenv).items() if v is not None})
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
    base = path.parent

    for section in ini.sections():
        if section not in {SECTION_MAIN, SECTION_NUMBERS, SECTION_CLIENTS, SECTION_BRIDGE} | FOREIGN_SECTIONS:
            raise ini.error(section, None, "unknown section")
    if SECTION_MAIN not in ini.sections():
        raise ConfigError(path, f"[{SECTION_MAIN}]", "section is missing")

    main = dict(ini.items(SECTION_MAIN))
    for key in main:
        if key not in MAIN_KEYS:
            raise ini.error(SECTION_MAIN, key, "unknown key")

    if not main.get("public_url"):
        raise ini.error(SECTION_MAIN, "public_url" if "public_url" in main else None, "public_url is required")
    public_url = _parse_url(ini, SECTION_MAIN, "public_url", main["public_url"], ("http", "https"))

    numbers: dict[str, NumberTarget] = {}
    for number, value in ini.items(SECTION_NUMBERS):
        numbers[_parse_e164(ini, SECTION_NUMBERS, number, number)] = _parse_number_target(ini, number, value)

    clients: dict[str, tuple[str, ...]] = {}
    if SECTION_CLIENTS in ini.sections():
        for name, value in ini.items(SECTION_CLIENTS):
            _parse_client_name(ini, SECTION_CLIENTS, name, name)
            caller_ids = tuple(_parse_e164(ini, SECTION_CLIENTS, name, item) for item in split_list(value))
            if not caller_ids:
                raise ini.error(SECTION_CLIENTS, name, "names no caller ID")
            if len(set(caller_ids)) != len(caller_ids):
                raise ini.error(SECTION_CLIENTS, name, "names a caller ID twice")
            clients[name] = caller_ids
    else:
        # The original behaviour: each client may call from the numbers that ring it.
        inverted: dict[str, list[str]] = {}
        for number, target in numbers.items():
            for client in target.clients:
                inverted.setdefault(client, []).append(number)
        clients = {name: tuple(ids) for name, ids in inverted.items()}

    countries_text = main.get("allowed_countries", "")
    allowed: frozenset[str] | None
    if countries_text.strip() == "*":
        allowed = None
    elif countries_text.strip():
        regions = phonenumbers.SUPPORTED_REGIONS
        codes = [code.upper() for code in split_list(countries_text)]
        for code in codes:
            if code not in regions:
                raise ini.error(SECTION_MAIN, "allowed_countries", f"{code!r} is not an ISO 3166 region code")
        allowed = frozenset(codes)
    else:
        every = list(numbers) + [n for ids in clients.values() for n in ids]
        allowed = frozenset(phonenumbers.region_code_for_number(phonenumbers.parse(n)) for n in every) - {None}

    ring_timeout = _parse_int(ini, SECTION_MAIN, "ring_timeout", main.get("ring_timeout", "20"), 5, 600, "seconds")
    keep_days = _parse_int(ini, SECTION_MAIN, "keep_days", main.get("keep_days", "90"), 1, 36500, "days")
    token_ttl = _parse_int(
        ini, SECTION_MAIN, "token_ttl", main.get("token_ttl", "3600"), 60, MAX_TOKEN_TTL, "seconds"
    )
    greeting_url = main.get("voicemail_greeting_url") or None
    if greeting_url:
        greeting_url = _parse_url(ini, SECTION_MAIN, "voicemail_greeting_url", greeting_url, ("http", "https"))
    try:
        database_url = _database_url(base, main.get("database") or "instance/shetphone.sqlite3")
    except ValueError as exc:
        raise ini.error(SECTION_MAIN, "database", str(exc)) from None
    message_queue = main.get("message_queue") or None
    if message_queue and not message_queue.startswith(("redis://", "rediss://", "unix://")):
        raise ini.error(SECTION_MAIN, "message_queue", f"{message_queue!r} is not a redis:// URL")
    # 0 where nothing is in front (`make run`): trusting X-Forwarded-For there would let
    # anyone pick the address the login lockout counts against.
    proxy_hops = _parse_int(
        ini, SECTION_MAIN, "proxy_hops", main.get("proxy_hops") or "0", 0, MAX_PROXY_HOPS, "proxies"
    )
    media_base = _parse_url(
        ini, SECTION_MAIN, "twilio_media_base", main.get("twilio_media_base") or "https://api.twilio.com",
        ("http", "https"),
    )

    bridge_items = dict(ini.items(SECTION_BRIDGE))
    for key in bridge_items:
        if key not in BRIDGE_KEYS:
            raise ini.error(SECTION_BRIDGE, key, "unknown key")
    host, port = _parse_listen(ini, bridge_items.get("listen") or "127.0.0.1:5001")
    text_channel = bridge_items.get("text_channel") or None
    if text_channel and not SNOWFLAKE.match(text_channel):
        raise ini.error(SECTION_BRIDGE, "text_channel", f"{text_channel!r} is not a Discord channel ID")

    instance_path = root / "instance"
    return Settings(
        config_path=path,
        public_url=public_url,
        htpasswd_path=_resolve(base, main.get("htpasswd") or ".htpasswd"),
        presets_path=_resolve(base, main.get("presets") or "presets.csv"),
        allowed_countries=allowed,
        allow_premium=_parse_bool(ini, SECTION_MAIN, "allow_premium", main.get("allow_premium", "no")),
        ring_timeout=ring_timeout,
        voicemail=_parse_bool(ini, SECTION_MAIN, "voicemail", main.get("voicemail", "yes")),
        voicemail_greeting=main.get("voicemail_greeting")
        or "Sorry, nobody can take your call. Please leave a message after the tone.",
        voicemail_greeting_url=greeting_url,
        keep_days=keep_days,
        token_ttl=token_ttl,
        database_url=database_url,
        message_queue=message_queue,
        numbers=MappingProxyType(numbers),
        clients=MappingProxyType(clients),
        bridge=BridgeSettings(host=host, port=port, text_channel=int(text_channel) if text_channel else None),
        twilio=TwilioSettings(
            account_sid=env.get("TWILIO_ACCOUNT_SID", ""),
            auth_token=env.get("TWILIO_AUTH_TOKEN", ""),
            app_sid=env.get("TWILIO_APP_SID", ""),
            api_key=env.get("TWILIO_API_KEY", ""),
            api_secret=env.get("TWILIO_API_SECRET", ""),
        ),
        secret_key=_load_secret_key(instance_path, env),
        instance_path=instance_path,
        discord_bot_token=env.get("DISCORD_BOT_TOKEN") or None,
        discord_bot_tokens=_discord_bot_tokens(path, env),
        twilio_media_base=media_base,
        proxy_hops=proxy_hops,
    )
