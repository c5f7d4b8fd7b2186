"""Settings: the ini file and environment into frozen dataclasses; every mistake one clear line."""

from __future__ import annotations

import dataclasses
import stat

import pytest
from conftest import INI, PUBLIC_URL, ROOT, TeamFiles

from shetphone.dialing import DialPolicy
from shetphone.directory import Directory
from shetphone.settings import ConfigError, load_settings


def load(files: TeamFiles):
    return load_settings(files.root, files.environ)


def policy_of(settings) -> DialPolicy:
    """The dialing policy the team builds from these settings (the default countries are its rule)."""
    directory = Directory(settings.numbers, settings.clients)
    return DialPolicy.configured(settings.allowed_countries, settings.allow_premium, directory.team_numbers())


def replace_in_ini(files: TeamFiles, old: str, new: str) -> None:
    text = files.ini.read_text()
    assert old in text
    files.ini.write_text(text.replace(old, new, 1))


def error_for(files: TeamFiles) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        load(files)
    return caught.value


def line_of(files: TeamFiles, needle: str) -> int:
    for number, line in enumerate(files.ini.read_text().splitlines(), start=1):
        if needle in line:
            return number
    raise AssertionError(needle)


def test_good_configuration_is_parsed_into_frozen_settings(team_files):
    settings = load(team_files)
    assert settings.public_url == PUBLIC_URL
    assert settings.public_host == "phone.example.test"
    assert settings.numbers["+441595000001"].clients == ("alice", "bob")
    assert settings.numbers["+441595000002"].stream_target == "discord:123456789012345678"
    assert settings.numbers["+441595000003"].stream_target == "echo"
    assert settings.clients["alice"] == ("+441595000001", "+15005550006")
    assert settings.htpasswd_path == team_files.root / ".htpasswd"
    assert settings.database_url == f"sqlite:///{team_files.root / 'shetphone.sqlite3'}"
    assert policy_of(settings).allowed_countries == frozenset({"GB", "US"})  # the regions of every number
    assert settings.token_ttl == 3600 and settings.ring_timeout == 20 and settings.keep_days == 90
    assert settings.allow_premium is False and settings.voicemail is True
    assert settings.bridge.port == 5001 and settings.bridge.text_channel == 123456789012345679
    assert settings.twilio.configured
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.public_url = "https://elsewhere"
    with pytest.raises(TypeError):
        settings.numbers["+441595000009"] = settings.numbers["+441595000003"]


def test_the_bridge_limits_default_to_100_calls_of_240_minutes(team_files):
    bridge = load(team_files).bridge
    assert (bridge.max_calls, bridge.max_call_minutes) == (100, 240)
    listen = "listen = 127.0.0.1:5001"
    replace_in_ini(team_files, listen, f"{listen}\nmax_calls = 3\nmax_call_minutes = 60")
    bridge = load(team_files).bridge
    assert (bridge.max_calls, bridge.max_call_minutes) == (3, 60)


def test_calls_from_discord_are_off_until_call_from_is_set_and_nobody_may_place_them_without_roles(team_files):
    bridge = load(team_files).bridge
    assert (bridge.call_from, bridge.call_role_ids) == (None, frozenset())
    listen = "listen = 127.0.0.1:5001"
    replace_in_ini(team_files, listen, f"{listen}\ncall_roles = 423456789012345678, 523456789012345678\n"
                   "call_from = +441595000002")
    bridge = load(team_files).bridge
    assert bridge.call_from == "+441595000002"
    assert bridge.call_role_ids == frozenset({423456789012345678, 523456789012345678})


def test_inline_comments_and_lists_with_commas(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 30 ; seconds\nallowed_countries = gb, IE  ; two")
    settings = load(team_files)
    assert settings.ring_timeout == 30
    assert settings.allowed_countries == frozenset({"GB", "IE"})


def test_star_allows_every_country(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nallowed_countries = *")
    assert policy_of(load(team_files)).every_country


def test_clients_default_to_the_numbers_read_the_other_way_round(team_files):
    text = team_files.ini.read_text()
    start = text.index("[shetphone:clients]")
    end = text.index("[shetphone:bridge]")
    team_files.ini.write_text(text[:start] + text[end:])
    settings = load(team_files)
    assert settings.clients is None  # the section is missing; reading numbers the other way is the directory's
    directory = Directory(settings.numbers, settings.clients)
    assert {name: directory.caller_ids_for(name) for name in ("alice", "bob", "carol", "dave")} == {
        "alice": ("+441595000001",), "bob": ("+441595000001",), "carol": ("+441595000004",), "dave": ()}


def test_environment_wins_over_dotenv(team_files):
    (team_files.root / ".env").write_text("TWILIO_APP_SID=APfromdotenv\nDISCORD_BOT_TOKEN=from-dotenv\n")
    settings = load(team_files)
    assert settings.twilio.app_sid == team_files.environ["TWILIO_APP_SID"]
    assert settings.discord_bot_token == "from-dotenv"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_a_dotenv_line_that_is_not_name_equals_value_names_its_line(team_files, newline):
    lines = ["# Twilio", "TWILIO_APP_SID=APfromdotenv", "", "DISCORD_BOT_TOKEN from-dotenv", "OTHER=1"]
    (team_files.root / ".env").write_bytes(newline.join(lines).encode() + newline.encode())
    assert str(error_for(team_files)) == f"{team_files.root / '.env'}:4: is not NAME=value (nor a # comment)"


def test_the_example_dotenv_copied_as_it_is_reads(team_files):
    (team_files.root / ".env").write_text((ROOT / ".env.example").read_text(encoding="utf-8"), encoding="utf-8")
    assert load(team_files).twilio.configured  # its empty values lose to the real environment's


def test_a_dotenv_that_is_not_utf8_names_its_line(team_files):
    (team_files.root / ".env").write_bytes(b"TWILIO_APP_SID=AP1\nDISCORD_BOT_TOKEN=t\xf6ken\n")
    assert str(error_for(team_files)) == f"{team_files.root / '.env'}:2: byte 0xf6 is not UTF-8; save the file as UTF-8"


def test_a_dotenv_with_a_byte_order_mark_still_names_its_first_variable(team_files):
    (team_files.root / ".env").write_text("\ufeffDISCORD_BOT_TOKEN=from-dotenv\r\n", encoding="utf-8")
    assert load(team_files).discord_bot_token == "from-dotenv"


def test_discord_bot_tokens_are_a_pool_and_a_single_token_is_a_pool_of_one(team_files):
    assert load(team_files).discord_bot_tokens == ()
    team_files.environ["DISCORD_BOT_TOKEN"] = "solo"
    assert load(team_files).discord_bot_tokens == ("solo",)
    team_files.environ["DISCORD_BOT_TOKENS"] = " first , second,third "
    assert load(team_files).discord_bot_tokens == ("first", "second", "third", "solo")
    team_files.environ["DISCORD_BOT_TOKEN"] = "second"  # already in the pool: not twice
    assert load(team_files).discord_bot_tokens == ("first", "second", "third")


@pytest.mark.parametrize(
    ("tokens", "what"),
    [("a,,b", "entry 2 is empty"), ("a,b,", "entry 3 is empty"), ("a,b,a", "entry 3 repeats entry 1")],
)
def test_a_bad_discord_bot_tokens_list_is_one_clear_line(team_files, tokens, what):
    team_files.environ["DISCORD_BOT_TOKENS"] = tokens
    error = error_for(team_files)
    assert error.where == "DISCORD_BOT_TOKENS"
    assert error.what.startswith(what)
    assert tokens not in str(error)  # a token is a secret: never in the message


def test_missing_twilio_variables_are_named(team_files):
    del team_files.environ["TWILIO_API_KEY"]
    del team_files.environ["TWILIO_APP_SID"]
    assert load(team_files).twilio.missing == ("TWILIO_APP_SID", "TWILIO_API_KEY")


def test_secret_key_is_generated_once_with_mode_0600(team_files):
    del team_files.environ["SHETPHONE_SECRET_KEY"]
    first = load(team_files).secret_key
    key_file = team_files.root / "instance" / "secret_key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert len(first) >= 32
    assert load(team_files).secret_key == first


@pytest.mark.parametrize(
    ("old", "new", "where", "what"),
    [
        ("ring_timeout = 20", "ring_timeout = 20\ncolour = blue", "[shetphone] colour", "unknown key"),
        ("[shetphone:bridge]", "[shetphone:extras]\n[shetphone:bridge]", "[shetphone:extras]", "unknown section"),
        ("+441595000004 = carol", "01595 000004 = carol", "[shetphone:numbers] 01595 000004", "E.164"),
        ("+441595000004 = carol", "+441595 000004 = carol", "[shetphone:numbers] +441595 000004", "E.164"),
        ("+441595000004 = carol", "+4415950 = carol", "[shetphone:numbers] +4415950", "not a valid phone number"),
        ("+441595000004 = carol", "+441595000004 = " + " ".join(f"u{i}" for i in range(11)),
         "[shetphone:numbers] +441595000004", "at most 10"),
        ("+441595000004 = carol", "+441595000004 = carol carol", "[shetphone:numbers] +441595000004", "twice"),
        ("+441595000004 = carol", "+441595000004 =", "[shetphone:numbers] +441595000004", "names no clients"),
        ("+441595000004 = carol", "+441595000004 = carol echo", "[shetphone:numbers] +441595000004", "mixed"),
        ("+441595000003 = echo", "+441595000003 = discord:12ab", "[shetphone:numbers] +441595000003", "Discord"),
        ("+441595000004 = carol", "+441595000004 = car<ol>", "[shetphone:numbers] +441595000004", "client name"),
        ("carol = +441595000004", "carol = 441595000004", "[shetphone:clients] carol", "E.164"),
        ("carol = +441595000004", "carol =", "[shetphone:clients] carol", "no caller ID"),
        ("ring_timeout = 20", "ring_timeout = 20\ntoken_ttl = 100000", "[shetphone] token_ttl", "out of range"),
        ("ring_timeout = 20", "ring_timeout = 20\ntoken_ttl = an hour", "[shetphone] token_ttl", "whole number"),
        ("ring_timeout = 20", "ring_timeout = soon", "[shetphone] ring_timeout", "whole number"),
        ("ring_timeout = 20", "ring_timeout = 20\nkeep_days = 0", "[shetphone] keep_days", "out of range"),
        ("ring_timeout = 20", "ring_timeout = 20\nallow_premium = maybe", "[shetphone] allow_premium", "yes or no"),
        ("ring_timeout = 20", "ring_timeout = 20\nallowed_countries = GB XX", "[shetphone] allowed_countries",
         "'XX' is not an ISO 3166"),
        (f"public_url = {PUBLIC_URL}", "public_url = phone.example.test", "[shetphone] public_url", "not a URL"),
        ("database = shetphone.sqlite3", "database = mysql://x/y", "[shetphone] database", "not a path"),
        ("ring_timeout = 20", "ring_timeout = 20\nmessage_queue = amqp://x", "[shetphone] message_queue", "redis"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1", "[shetphone:bridge] listen", "HOST:PORT"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1:99999", "[shetphone:bridge] listen", "out of range"),
        ("text_channel = 123456789012345679", "text_channel = general", "[shetphone:bridge] text_channel",
         "Discord channel"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1:5001\nmax_calls = 0", "[shetphone:bridge] max_calls",
         "out of range"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1:5001\nmax_call_minutes = long",
         "[shetphone:bridge] max_call_minutes", "whole number"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1:5001\ncall_roles = 423456789012345678 admins",
         "[shetphone:bridge] call_roles", "'admins' is not a Discord role ID"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1:5001\ncall_from = 01595 000002",
         "[shetphone:bridge] call_from", "E.164"),
        ("listen = 127.0.0.1:5001", "listen = 127.0.0.1:5001\ncall_from = +441595000009",
         "[shetphone:bridge] call_from", "+441595000009 is not a number of [shetphone:numbers]"),
        ("ring_timeout = 20", "ring_timeot = 20", "[shetphone] ring_timeot", "key (did you mean ring_timeout?)"),
        ("ring_timeout = 20", "Ring_Timeout = 20", "[shetphone] Ring_Timeout", "(did you mean ring_timeout?)"),
        ("ring_timeout = 20", "colour = blue", "[shetphone] colour", ": unknown key"),
        ("ring_timeout = 20", "max_calls = 20", "[shetphone] max_calls", "belongs in [shetphone:bridge], not in"),
        ("[shetphone:numbers]", "[shetphone:number]", "[shetphone:number]", "(did you mean [shetphone:numbers]?)"),
        ("[shetphone:clients]", "[clients]", "[clients]", "unknown section (did you mean [shetphone:clients]?)"),
        ("[shetphone]", "[Shetphone]", "[Shetphone]", "unknown section (did you mean [shetphone]?)"),
    ],
)
def test_each_mistake_is_one_line_naming_file_line_and_key(team_files, old, new, where, what):
    replace_in_ini(team_files, old, new)
    error = error_for(team_files)
    message = str(error)
    assert "\n" not in message
    assert message.startswith(f"{team_files.ini}:")
    assert where in message
    assert what in message
    first_new_line = new.splitlines()[-1] if where.split()[-1] in new.splitlines()[-1] else new.splitlines()[0]
    assert error.line == line_of(team_files, first_new_line.strip())


def test_duplicate_key_names_its_line(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nring_timeout = 30")
    error = error_for(team_files)
    assert "[shetphone] ring_timeout" in str(error) and "twice" in str(error)
    assert error.line == line_of(team_files, "ring_timeout = 30")


def test_missing_public_url(team_files):
    replace_in_ini(team_files, f"public_url = {PUBLIC_URL}\n", "")
    assert "public_url is required" in str(error_for(team_files))


def test_missing_ini_file(team_files):
    team_files.ini.unlink()
    assert str(error_for(team_files)) == f"{team_files.ini}: file not found (copy shetphone.ini.example to start)"


def test_a_byte_order_mark_is_not_a_key(team_files):
    # Notepad's "UTF-8" puts a BOM first; configparser alone took it for a key before any section.
    team_files.ini.write_text("\ufeff" + team_files.ini.read_text(), encoding="utf-8")
    assert load(team_files).public_url == PUBLIC_URL


def test_windows_line_endings_read_like_unix_ones(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 30 ; seconds")
    team_files.ini.write_bytes(team_files.ini.read_bytes().replace(b"\n", b"\r\n"))
    settings = load(team_files)
    assert settings.ring_timeout == 30 and settings.public_url == PUBLIC_URL
    assert settings.numbers["+441595000001"].clients == ("alice", "bob")


def test_a_byte_that_is_not_utf8_names_its_line(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nvoicemail_greeting = Hall\xf6")
    line = line_of(team_files, "voicemail_greeting")
    team_files.ini.write_bytes(team_files.ini.read_text().encode("latin-1"))
    assert str(error_for(team_files)) == f"{team_files.ini}:{line}: byte 0xf6 is not UTF-8; save the file as UTF-8"


def test_an_ini_that_is_a_directory_is_one_line(team_files):
    team_files.ini.unlink()
    team_files.ini.mkdir()
    assert str(error_for(team_files)) == f"{team_files.ini}: cannot be read: Is a directory"


@pytest.mark.parametrize(("old", "new", "where", "above"), [
    ("ring_timeout = 20", "ring_timeout = 20\n    keep_days = 5", "[shetphone] keep_days", "ring_timeout"),
    ("+441595000003 = echo", "  +441595000003 = echo", "[shetphone:numbers] +441595000003", "+441595000002"),
])
def test_an_indented_key_is_not_swallowed_by_the_value_above(team_files, old, new, where, above):
    replace_in_ini(team_files, old, new)
    error = error_for(team_files)
    assert error.line == line_of(team_files, new.split("\n")[-1])
    assert str(error) == f"{team_files.ini}:{error.line}: {where}: is indented, so it continues the value of {above} " \
        "above; remove the spaces before it"


def test_a_list_may_still_go_on_over_indented_lines(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nallowed_countries = GB\n    IE, US")
    assert load(team_files).allowed_countries == frozenset({"GB", "IE", "US"})


def test_garbage_line(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nthis is not a setting")
    error = error_for(team_files)
    assert error.line == line_of(team_files, "this is not a setting")
    assert "neither a [section]" in str(error)


def test_missing_main_section(team_files):
    team_files.ini.write_text("[shetphone:numbers]\n+441595000001 = alice\n")
    assert "[shetphone]: section is missing" in str(error_for(team_files))


def test_config_path_from_environment(team_files, tmp_path):
    other = tmp_path / "elsewhere.ini"
    other.write_text(INI.format(public_url="https://other.example.test", extra=""))
    team_files.environ["SHETPHONE_CONFIG"] = str(other)
    assert load(team_files).public_url == "https://other.example.test"


def test_postgresql_url_uses_psycopg(team_files):
    replace_in_ini(team_files, "database = shetphone.sqlite3", "database = postgresql://u:p@db.example.test/phone")
    assert load(team_files).database_url == "postgresql+psycopg://u:p@db.example.test/phone"


def test_proxy_hops_defaults_to_none_trusted(team_files):
    assert load(team_files).proxy_hops == 0


def test_proxy_hops_is_read(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nproxy_hops = 1")
    assert load(team_files).proxy_hops == 1


@pytest.mark.parametrize(("value", "what"), [("-1", "out of range (0 to 5 proxies)"), ("one", "not a whole number")])
def test_bad_proxy_hops_is_one_clear_line(team_files, value, what):
    replace_in_ini(team_files, "ring_timeout = 20", f"ring_timeout = 20\nproxy_hops = {value}")
    error = error_for(team_files)
    assert "[shetphone] proxy_hops" in str(error) and what in str(error)
    assert error.line == line_of(team_files, "proxy_hops")


def test_an_empty_value_is_the_default(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout =\nproxy_hops =\nvoicemail =")
    settings = load(team_files)
    assert (settings.ring_timeout, settings.proxy_hops, settings.voicemail) == (20, 0, True)
    assert ("shetphone", "ring_timeout") not in settings.written


def test_allowed_countries_may_name_the_non_geographic_region(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nallowed_countries = GB 001")
    assert load(team_files).allowed_countries == frozenset({"GB", "001"})
    replace_in_ini(team_files, "allowed_countries = GB 001", "allowed_countries = * 001")
    assert load(team_files).allowed_countries == frozenset({"*", "001"})


def test_star_beside_a_country_is_a_mistake(team_files):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\nallowed_countries = * GB")
    error = error_for(team_files)
    assert "[shetphone] allowed_countries: * is every country already" in str(error)
    assert error.line == line_of(team_files, "allowed_countries")


def test_twilio_api_base_is_read(team_files):
    assert load(team_files).twilio_api_base == "https://api.twilio.com"
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\ntwilio_api_base = http://127.0.0.1:8099/")
    assert load(team_files).twilio_api_base == "http://127.0.0.1:8099"


def test_twilio_media_base_its_old_name_is_still_read_with_a_warning(team_files, caplog):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\ntwilio_media_base = http://127.0.0.1:8099")
    with caplog.at_level("WARNING", logger="shetphone.settings"):
        assert load(team_files).twilio_api_base == "http://127.0.0.1:8099"
    assert "twilio_media_base is now called twilio_api_base" in caplog.text


def test_the_old_and_the_new_name_together_are_a_mistake(team_files):
    replace_in_ini(team_files, "ring_timeout = 20",
                   "ring_timeout = 20\ntwilio_api_base = https://api.twilio.com\ntwilio_media_base = http://x.test")
    error = error_for(team_files)
    assert "[shetphone] twilio_media_base: is the old name of twilio_api_base, which is set too" in str(error)
    assert error.line == line_of(team_files, "twilio_media_base")


@pytest.mark.parametrize("queue", ["redis://127.0.0.1:6379/0", "rediss://:pw@redis.example.test:6380/1"])
def test_message_queue_takes_redis_and_rediss(team_files, queue):
    replace_in_ini(team_files, "ring_timeout = 20", f"ring_timeout = 20\nmessage_queue = {queue}")
    assert load(team_files).message_queue == queue


@pytest.mark.parametrize(
    ("queue", "what"),
    [
        ("unix:///run/redis/redis.sock", "a Unix socket cannot be used"),
        ("redis+unix:///run/redis/redis.sock", "a Unix socket cannot be used"),
        ("redis://", "is not a redis:// or rediss:// URL"),
        ("redis://127.0.0.1:port/0", "port that is not a number"),
        ("redis://127.0.0.1:6379/shetphone", "what follows the port must be a database number, like /0"),
        ("redis://127.0.0.1:6379/0/1", "what follows the port must be a database number"),
    ],
)
def test_message_queue_that_socketio_or_the_lockout_cannot_use_is_one_line(team_files, queue, what):
    replace_in_ini(team_files, "ring_timeout = 20", f"ring_timeout = 20\nmessage_queue = {queue}")
    error = error_for(team_files)
    assert "\n" not in str(error)
    assert "[shetphone] message_queue" in str(error) and what in str(error)
    assert error.line == line_of(team_files, "message_queue")


def test_an_empty_secret_key_file_is_refused(team_files):
    del team_files.environ["SHETPHONE_SECRET_KEY"]
    key_file = team_files.root / "instance" / "secret_key"
    key_file.parent.mkdir()
    key_file.write_text("\n")  # what a crash between creating and writing the file used to leave
    error = error_for(team_files)
    assert str(error).startswith(f"{key_file}: is empty; delete it")


def test_a_crash_while_writing_the_secret_key_leaves_no_key_file(team_files, monkeypatch):
    del team_files.environ["SHETPHONE_SECRET_KEY"]
    instance = team_files.root / "instance"

    def disk_full(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("os.fsync", disk_full)
    assert "cannot be created: No space left on device" in str(error_for(team_files))
    assert list(instance.iterdir()) == []  # neither an empty secret_key nor a temporary file
    monkeypatch.undo()
    key = load(team_files).secret_key
    assert len(key) >= 32 and (instance / "secret_key").read_text().strip() == key
    assert [p.name for p in instance.iterdir()] == ["secret_key"]


def test_secrets_stay_out_of_the_settings_repr(team_files):
    team_files.environ["DISCORD_BOT_TOKEN"] = "discord-bot-token-value"
    replace_in_ini(team_files, "database = shetphone.sqlite3",
                   "database = postgresql://u:db-password@db.example.test/phone\n"
                   "message_queue = redis://:redis-password@127.0.0.1:6379/0")
    settings = load(team_files)
    shown = repr(settings)
    secrets = [team_files.environ["TWILIO_AUTH_TOKEN"], team_files.environ["TWILIO_API_SECRET"],
               settings.secret_key, "discord-bot-token-value", "db-password", "redis-password"]
    assert [secret for secret in secrets if secret in shown] == []
    assert settings.twilio.account_sid in shown and "phone.example.test" in shown  # the rest is still there


# --------------------------------------------------------------------------- presence and mail (SPEC §7, §8)

BRIDGE = "[shetphone:bridge]"


def with_sections(files: TeamFiles, text: str) -> None:
    replace_in_ini(files, BRIDGE, text + "\n" + BRIDGE)


def test_outside_phones_forward_numbers_and_addresses_are_read(team_files):
    replace_in_ini(team_files, "+441595000001 = alice bob", "+441595000001 = alice +447911123401 bob")
    replace_in_ini(team_files, "+441595000004 = carol", "+441595000004 = +447911123402")
    with_sections(team_files, "[shetphone:forward]\nalice = +447911123403\n\n[shetphone:email]\n"
                              "alice = alice@example.test, Alice@Example.test\nbob = b@example.test\n")
    settings = load(team_files)
    first = settings.numbers["+441595000001"]
    assert (first.clients, first.outside_numbers) == (("alice", "bob"), ("+447911123401",))
    assert settings.numbers["+441595000004"].outside_numbers == ("+447911123402",)
    assert settings.numbers["+441595000004"].clients == ()
    assert settings.forward == {"alice": "+447911123403"}
    assert settings.email == {"alice": ("alice@example.test", "Alice@Example.test"), "bob": ("b@example.test",)}
    assert settings.lines[("shetphone:forward", "alice")] == line_of(team_files, "alice = +447911123403")


@pytest.mark.parametrize(
    ("sections", "where", "what", "needle"),
    [
        ("[shetphone:forward]\nalice = 07911 123401\n", "[shetphone:forward] alice", "E.164", "alice = 07911"),
        ("[shetphone:forward]\nalice = +447911123401 +447911123402\n", "[shetphone:forward] alice", "one phone",
         "alice = +4479"),
        ("[shetphone:forward]\nal ice = +447911123401\n", "[shetphone:forward] al ice", "client name", "al ice"),
        ("[shetphone:email]\ndave = dave-at-example\n", "[shetphone:email] dave", "not an e-mail address",
         "dave ="),
        ("[shetphone:email]\ndave =\n", "[shetphone:email] dave", "no e-mail address", "dave ="),
    ],
)
def test_a_bad_forward_or_email_line_is_one_clear_line(team_files, sections, where, what, needle):
    with_sections(team_files, sections)
    error = error_for(team_files)
    assert where in str(error) and what in str(error) and "\n" not in str(error)
    assert error.line == line_of(team_files, needle)


@pytest.mark.parametrize(
    ("new", "what"),
    [
        ("+441595000004 = carol 07911123401", "looks like a phone number"),
        ("+441595000004 = carol +4479111", "E.164"),
        ("+441595000004 = carol +447911123401 +447911123401", "outside phone twice"),
        ("+441595000004 = carol " + " ".join(f"+4479111234{n:02}" for n in range(10)), "at most 10"),
    ],
)
def test_a_bad_outside_phone_names_its_line(team_files, new, what):
    replace_in_ini(team_files, "+441595000004 = carol", new)
    error = error_for(team_files)
    assert "[shetphone:numbers] +441595000004" in str(error) and what in str(error)
    assert error.line == line_of(team_files, "+441595000004 =")


def test_mail_and_transcription_keys(team_files):
    settings = load(team_files)
    assert (settings.smtp_url, settings.mail_from, settings.voicemail_transcribe) == (None, None, False)
    assert settings.mail_configured is False and settings.presence_ttl == 45
    replace_in_ini(team_files, "ring_timeout = 20",
                   "ring_timeout = 20\nsmtp_url = smtp://me:s%40cret@mail.example.test:587\n"
                   "mail_from = Shetphone <phone@example.test>\nvoicemail_transcribe = yes\npresence_ttl = 3")
    settings = load(team_files)
    assert settings.smtp_url == "smtp://me:s%40cret@mail.example.test:587"
    assert settings.mail_from == "Shetphone <phone@example.test>"
    assert settings.voicemail_transcribe is True and settings.mail_configured is True and settings.presence_ttl == 3
    assert "s%40cret" not in repr(settings)


@pytest.mark.parametrize(
    ("lines", "where", "what"),
    [
        ("smtp_url = imap://me:pw@mail.example.test\nmail_from = p@example.test", "[shetphone] smtp_url",
         "smtp:// or smtps://"),
        ("smtp_url = smtp://me:topsecret@mail.example.test:99999\nmail_from = p@example.test", "[shetphone] smtp_url",
         "port"),
        ("smtp_url = smtp://mail.example.test", "[shetphone] smtp_url", "mail_from is not"),
        ("mail_from = Shetphone", "[shetphone] mail_from", "not an e-mail address"),
        ("presence_ttl = 90", "[shetphone] presence_ttl", "out of range"),
        ("voicemail_transcribe = please", "[shetphone] voicemail_transcribe", "yes or no"),
    ],
)
def test_a_bad_mail_key_is_one_line_and_never_shows_the_password(team_files, lines, where, what):
    replace_in_ini(team_files, "ring_timeout = 20", "ring_timeout = 20\n" + lines)
    message = str(error_for(team_files))
    assert where in message and what in message and "\n" not in message
    assert "topsecret" not in message
