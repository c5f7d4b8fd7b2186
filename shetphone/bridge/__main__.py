"""``python -m shetphone.bridge [--record DIR] [--state DIR]``: the Twilio Media Streams bridge.

Exit status: 0 after SIGTERM or SIGINT (sessions closed, recordings finalised),
2 when the configuration is wrong (one clear line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..settings import ConfigError, Settings, load_settings
from .replay import FILE_NAME, ReplayGuard

if TYPE_CHECKING:
    from .placing import CallPlacer, PlacedCalls

log = logging.getLogger("shetphone.bridge")

ROOT = Path(__file__).resolve().parents[2]  # the directory of app.py
EXIT_CONFIG = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m shetphone.bridge",
        description="Bridge Twilio Media Streams to Discord voice channels (settings: [shetphone:bridge]).",
    )
    parser.add_argument("--record", metavar="DIR", type=Path, help="also write each call to DIR/CALLSID.wav")
    parser.add_argument(
        "--state",
        metavar="DIR",
        type=Path,
        help="where the stream auth values already used are kept (default: instance/)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log debug messages")
    return parser.parse_args(argv)


def check_record_dir(directory: Path) -> Path:
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(directory, "--record", f"cannot be created: {exc.strerror}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise ConfigError(directory, "--record", "is not writable")
    return directory.resolve()


def configured_targets(settings: Settings) -> frozenset[str]:
    """The stream targets of [shetphone:numbers]: the only ones a stream may name."""
    return frozenset(t.stream_target for t in settings.numbers.values() if t.stream_target is not None)


def open_replay_guard(directory: Path) -> ReplayGuard:
    try:
        return ReplayGuard.in_directory(directory)
    except OSError as exc:
        where = directory / FILE_NAME
        raise ConfigError(where, "", f"cannot be opened: {exc.strerror or exc}") from None


def call_placer(
    settings: Settings, placed: PlacedCalls, calls_to: Callable[[str], list[tuple[str, str]]]
) -> CallPlacer:
    """/call's placer: the outgoing-call policy of the settings, call_from, Twilio's REST API."""
    from ..dialing import DialPolicy
    from ..directory import Directory
    from ..twilio_rest import TwilioRest
    from .placing import CallPlacer, PlacerConfig
    from .server import MEDIA_PATH

    assert settings.bridge.call_from is not None
    team_numbers = Directory(settings.numbers, settings.clients).team_numbers()
    config = PlacerConfig(
        call_from=settings.bridge.call_from,
        policy=DialPolicy.configured(settings.allowed_countries, settings.allow_premium, team_numbers),
        stream_url=f"wss://{settings.public_host}{MEDIA_PATH}",
        status_url=f"{settings.public_url}/voice/status",
    )
    rest = TwilioRest(settings.twilio.account_sid, settings.twilio.auth_token, settings.twilio_api_base)
    return CallPlacer(config, rest, placed, calls_to)


async def serve(settings: Settings, record_dir: Path | None, replay: ReplayGuard) -> int:
    # Imported once the configuration is known to be good: numpy, discord.py and
    # websockets take a while to load, and a mistake should be reported at once.
    from .placing import PlacedCalls
    from .server import MEDIA_PATH, Bridge, BridgeConfig, make_targets
    from .targets.discord import DiscordHub
    from .targets.discord.commands import CallCommands

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)

    placed = PlacedCalls(settings.secret_key)
    bridge: Bridge | None = None
    hub = None
    tokens = settings.discord_bot_tokens
    if tokens:
        commands = None
        if settings.bridge.call_from is not None:
            placer = call_placer(settings, placed, lambda target: bridge.calls_to(target) if bridge else [])
            commands = CallCommands(placer, settings.bridge.call_role_ids, all_busy=lambda c: hub.all_busy(c))
            log.info(
                "/call and /hangup: calls from %s, for %d role(s) of call_roles",
                settings.bridge.call_from, len(settings.bridge.call_role_ids),
            )
        hub = DiscordHub.with_bots(
            len(tokens), settings.bridge.text_channel, commands=commands.install if commands else None
        )
        hub.start(tokens)
        log.info("%d Discord bot(s): at most %d calls into different channels of one server", len(tokens), len(tokens))
    else:
        log.warning("neither DISCORD_BOT_TOKENS nor DISCORD_BOT_TOKEN is set: only echo streams will be served")
        if settings.bridge.call_from is not None:
            log.warning("call_from is set, but without a Discord bot nobody can use /call")

    config = BridgeConfig(
        settings.twilio.auth_token,
        settings.public_host,
        account_sid=settings.twilio.account_sid,
        secret_key=settings.secret_key,
        allowed_targets=configured_targets(settings),
        record_dir=record_dir,
        max_calls=settings.bridge.max_calls,
        max_call_seconds=settings.bridge.max_call_minutes * 60,
    )
    bridge = Bridge(config, make_targets(hub), replay=replay, placed=placed)
    host, port = settings.bridge.host, settings.bridge.port
    try:
        await bridge.start(host, port)
    except OSError as exc:
        raise ConfigError(
            settings.config_path, "[shetphone:bridge] listen", f"cannot listen on {host}:{port}: {exc.strerror}"
        ) from None
    log.info(
        "media bridge listening on ws://%s:%d%s for wss://%s%s%s",
        host,
        bridge.port,
        MEDIA_PATH,
        settings.public_host,
        MEDIA_PATH,
        f", recording into {record_dir}" if record_dir else "",
    )
    await stop.wait()
    log.info("shutting down: closing %d streams", len(bridge.sessions))
    await bridge.stop()
    if hub is not None:
        await hub.close()
    log.info("media bridge stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        settings = load_settings(ROOT)
        if not settings.twilio.auth_token:
            raise ConfigError(
                settings.config_path,
                "TWILIO_AUTH_TOKEN",
                "is not set; the media bridge needs it to check Twilio's signatures",
            )
        if not settings.twilio.account_sid:
            raise ConfigError(
                settings.config_path,
                "TWILIO_ACCOUNT_SID",
                "is not set; the media bridge needs it to check which account a stream comes from",
            )
        record_dir = check_record_dir(args.record) if args.record else None
        replay = open_replay_guard(args.state or settings.instance_path)
        return asyncio.run(serve(settings, record_dir, replay))
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return EXIT_CONFIG


if __name__ == "__main__":
    sys.exit(main())
