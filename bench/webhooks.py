"""Webhook latency and throughput, and status fan-out to Socket.IO clients.

Run from the repository root: ``python bench/webhooks.py`` (``make bench`` does).
Prints a table and writes ``bench/results/webhooks.json``.

1. ``POST /voice`` (an incoming call: signature check, directory, call log
   insert, TwiML) and ``POST /voice/status`` (a new leg: signature, call log
   write, emit) at concurrency 1, 16 and 64, beside the floor: a minimal Flask
   app returning fixed TwiML on the same gevent server, in the same run; and
   the signed floor: the same app reading the form and checking the signature
   as Shetphone does before it answers (bench/floor_app.py).
2. Fan-out: N Socket.IO clients (1, 100, 1,000) logged in as ten users, one per
   Twilio number; signed status posts to each number in turn; the latency from
   the POST being sent to each client's event, and the events lost.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import socketio

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from conftest import (  # noqa: E402
    PASSWORDS,
    csrf_token_from,
    free_port,
    live_login,
    make_team_files,
    signature_for,
    start_server,
)

from shetphone.twilio_fields import CALL_SID  # noqa: E402

NUMBERS = [f"+4415950001{i:02d}" for i in range(10)]
USERS = [f"user{i}" for i in range(10)]
BENCH_INI = (
    "[shetphone]\npublic_url = {public_url}\nhtpasswd = .htpasswd\npresets = presets.csv\n"
    "database = shetphone.sqlite3\n{extra}\n[shetphone:numbers]\n"
    + "".join(f"{number} = {user}\n" for number, user in zip(NUMBERS, USERS, strict=True))
)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary(latencies_s: list[float], seconds: float) -> dict:
    ms = [value * 1000 for value in latencies_s]
    return {
        "requests": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
        "per_second": round(len(ms) / seconds, 1),
    }


# ----------------------------------------------------------------- latency / throughput


def voice_request(index: int) -> dict[str, str]:
    return {"CallSid": f"CAb0{index:030x}", "From": "+447700900123", "To": NUMBERS[index % 10],
            "Direction": "inbound", "AccountSid": "AC" + "0" * 32}


def status_request(index: int) -> dict[str, str]:
    return {"CallSid": f"CA1e{index:030x}", "ParentCallSid": f"CAb0{index % 500:030x}",
            "CallStatus": "ringing", "SequenceNumber": "0", "From": "+447700900123", "To": "client:user0"}


def check_sids_are_real_form() -> None:
    """A CallSid of another form is answered but not logged (twilio_fields): the bench would time less work."""
    for form in (voice_request(0), status_request(0)):
        for field in ("CallSid", "ParentCallSid"):
            assert field not in form or CALL_SID.fullmatch(form[field]), form


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc), in seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def hammer(base_url: str, public_url: str, token: str, path: str, make_params, concurrency: int,
                 count: int, offset: int, pid: int | None = None) -> dict:
    """Send ``count`` signed POSTs with ``concurrency`` in flight; every response must be 2xx.

    With ``pid``, also the server process's CPU per request: p99 on two shared cores
    swings with whatever else runs, the CPU a request costs the server does not.
    """
    bodies = []
    for index in range(offset, offset + count):
        params = make_params(index)
        bodies.append((params, signature_for(token, public_url + path, params)))
    latencies: list[float] = []
    failures = 0
    queue = iter(bodies)

    async def worker(session: aiohttp.ClientSession) -> None:
        nonlocal failures
        for params, signature in queue:
            started = time.perf_counter()
            async with session.post(base_url + path, data=params, headers={"X-Twilio-Signature": signature}) as r:
                await r.read()
                if r.status >= 300:
                    failures += 1
            latencies.append(time.perf_counter() - started)

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        cpu_before = cpu_seconds(pid) if pid else 0.0
        began = time.perf_counter()
        await asyncio.gather(*(worker(session) for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
        cpu_used = cpu_seconds(pid) - cpu_before if pid else None
    result = summary(latencies, elapsed)
    result["failures"] = failures
    if cpu_used is not None:
        result["server_cpu_ms"] = round(cpu_used * 1000 / count, 3)
    return result


def start_floor(*signed: str) -> tuple[subprocess.Popen, str]:
    """The floor app on a port of its own; with ``"signed", token, public_url`` the signed floor."""
    port = free_port()
    process = subprocess.Popen([sys.executable, str(ROOT / "bench" / "floor_app.py"), str(port), *signed])
    url = f"http://127.0.0.1:{port}"
    import requests

    for _ in range(300):
        try:
            if requests.get(url + "/healthz", timeout=1).ok:
                return process, url
        except requests.ConnectionError:
            time.sleep(0.05)
    raise RuntimeError("the floor app did not start")


def phones_started(server) -> list:
    """Each user's browser connected with its phone started, as in working hours: a call to a
    number then rings its browser (SPEC §7) rather than going straight to voicemail."""
    browsers, sessions = [], {}
    for name in USERS:
        sessions[name] = live_login(server, name)
        browser = socketio.Client(http_session=sessions[name], reconnection=False)
        browser.connect(server.url, transports=["websocket"], wait_timeout=10)
        browser.emit("phone", {"ready": True})
        browsers.append(browser)
    for name, session in sessions.items():  # the server counts each once it has read its event
        deadline = time.monotonic() + 10
        while session.get(server.url + "/team", timeout=5).json()["team"][0]["state"] != "available":
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name}'s phone was never counted as started")
            time.sleep(0.05)
    return browsers


def bench_webhooks(server, floor, floor_url: str, signed, signed_url: str, count: int) -> dict:
    token, public_url = server.files.auth_token, server.files.public_url
    browsers = phones_started(server)
    results: dict = {}
    offset = 0
    for concurrency in (1, 16, 64):
        row = {}
        row["floor"] = asyncio.run(hammer(floor_url, public_url, token, "/voice", voice_request,
                                          concurrency, count, offset, floor.pid))
        row["signed_floor"] = asyncio.run(hammer(signed_url, public_url, token, "/voice", voice_request,
                                                 concurrency, count, offset, signed.pid))
        row["voice"] = asyncio.run(hammer(server.url, public_url, token, "/voice", voice_request,
                                          concurrency, count, offset, server.process.pid))
        row["status"] = asyncio.run(hammer(server.url, public_url, token, "/voice/status", status_request,
                                           concurrency, count, offset, server.process.pid))
        row["voice_p99_over_floor"] = round(row["voice"]["p99_ms"] / row["floor"]["p99_ms"], 2)
        row["voice_cpu_over_floor"] = round(row["voice"]["server_cpu_ms"] / row["floor"]["server_cpu_ms"], 2)
        row["signed_floor_cpu_over_floor"] = round(
            row["signed_floor"]["server_cpu_ms"] / row["floor"]["server_cpu_ms"], 2)
        results[str(concurrency)] = row
        offset += count
    for browser in browsers:
        browser.disconnect()
    return results


# ------------------------------------------------------------------------------ fan-out


async def login(session: aiohttp.ClientSession, base_url: str, name: str) -> None:
    async with session.get(base_url + "/login") as page:
        token = csrf_token_from(await page.text())
    async with session.post(base_url + "/login", data={"username": name, "password": PASSWORDS[name],
                                                       "csrf_token": token}, allow_redirects=False) as r:
        assert r.status == 302, f"login of {name} failed: {r.status}"


async def fan_out(server, clients: int, events_per_number: int, interval: float) -> dict:
    received: dict[str, list[float]] = {}  # leg sid -> receive times
    sessions = []
    cookies = {}
    for name in USERS:
        session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))  # 127.0.0.1 is an IP
        await login(session, server.url, name)
        cookies[name] = "; ".join(f"{c.key}={c.value}" for c in session.cookie_jar)
        sessions.append(session)

    sios: list[socketio.AsyncClient] = []
    per_user = [0] * 10

    async def connect(index: int) -> None:
        user = index % 10
        per_user[user] += 1
        sio = socketio.AsyncClient(reconnection=False)

        @sio.on("call_status")
        async def on_status(payload):
            received.setdefault(payload["call_sid"], []).append(time.perf_counter())

        await sio.connect(server.url, transports=["websocket"], headers={"Cookie": cookies[USERS[user]]},
                          wait_timeout=30)
        sios.append(sio)

    for start in range(0, clients, 50):  # connect in batches: a thundering herd measures nothing useful
        await asyncio.gather(*(connect(i) for i in range(start, min(clients, start + 50))))

    token, public_url = server.files.auth_token, server.files.public_url
    sent: dict[str, tuple[float, int]] = {}
    async with aiohttp.ClientSession() as http:
        for number_index in range(10):  # one root call per number, as Twilio would open it
            params = {"CallSid": f"CAfa{clients:05x}{number_index:025x}", "From": "+447700900123",
                      "To": NUMBERS[number_index]}
            async with http.post(server.url + "/voice", data=params, headers={
                    "X-Twilio-Signature": signature_for(token, public_url + "/voice", params)}) as r:
                assert r.status == 200
        for event in range(events_per_number * 10):
            number_index = event % 10
            leg = f"CAf1{clients:05x}{event:025x}"
            params = {"CallSid": leg, "ParentCallSid": f"CAfa{clients:05x}{number_index:025x}",
                      "CallStatus": "ringing", "SequenceNumber": "0", "From": "+447700900123",
                      "To": f"client:{USERS[number_index]}"}
            signature = signature_for(token, public_url + "/voice/status", params)
            sent[leg] = (time.perf_counter(), per_user[number_index])
            async with http.post(server.url + "/voice/status", data=params,
                                 headers={"X-Twilio-Signature": signature}) as r:
                assert r.status == 204
            await asyncio.sleep(interval)
    # Late is not lost: wait until nothing has arrived for 2 s (at most 60 s) before counting.
    deadline = time.perf_counter() + 60
    while time.perf_counter() < deadline:
        before = sum(len(times) for times in received.values())
        await asyncio.sleep(2)
        if sum(len(times) for times in received.values()) == before:
            break
    latencies = []
    expected = lost = 0
    for leg, (sent_at, audience) in sent.items():
        times = received.get(leg, [])
        expected += audience
        lost += max(0, audience - len(times))
        latencies += [t - sent_at for t in times]
    for sio in sios:
        await sio.disconnect()
    for session in sessions:
        await session.close()
    result = summary(latencies, 1.0)
    result.pop("per_second")
    result.update(clients=clients, events_sent=len(sent), deliveries_expected=expected, lost=lost)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per route and concurrency")
    parser.add_argument("--events", type=int, default=10, help="status events per number in the fan-out")
    parser.add_argument("--clients", default="1,100,1000")
    parser.add_argument("--interval", type=float, default=0.1,
                        help="seconds between status posts in the fan-out (10 a second is a very busy team)")
    args = parser.parse_args()
    check_sids_are_real_form()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 sockets each side

    work = Path(tempfile.mkdtemp(prefix="shetphone-bench-"))
    files = make_team_files(work)
    files.ini_template = BENCH_INI
    files.write_users({name: PASSWORDS.setdefault(name, f"{name}-password") for name in USERS})
    server = start_server(files)
    floor, floor_url = start_floor()
    signed, signed_url = start_floor("signed", files.auth_token, files.public_url)
    try:
        webhooks = bench_webhooks(server, floor, floor_url, signed, signed_url, args.requests)
        fanout = [asyncio.run(fan_out(server, int(n), args.events, args.interval))
                  for n in args.clients.split(",") if n]
    finally:
        server.stop()
        for process in (floor, signed):
            process.terminate()
            process.wait()

    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
               "fan_out_interval_s": args.interval,
               "webhooks": webhooks, "fan_out": fanout}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "webhooks.json").write_text(json.dumps(results, indent=2))

    print("Webhooks (ms; requests/s)")
    print(f"{'conc':>4} {'route':<12} {'p50':>8} {'p99':>8} {'req/s':>8} {'cpu ms':>7} {'fail':>5}")
    for concurrency, row in webhooks.items():
        for route in ("floor", "signed_floor", "voice", "status"):
            r = row[route]
            print(f"{concurrency:>4} {route:<12} {r['p50_ms']:>8} {r['p99_ms']:>8} {r['per_second']:>8} "
                  f"{r['server_cpu_ms']:>7} {r['failures']:>5}")
        print(f"{'':>4} /voice over the floor: p99 {row['voice_p99_over_floor']}, "
              f"server CPU {row['voice_cpu_over_floor']} (target <= 1.5); the signed floor's CPU "
              f"{row['signed_floor_cpu_over_floor']}")
    print("Fan-out (POST sent -> event received, ms)")
    for row in fanout:
        print(f"{row['clients']:>5} clients: p50 {row['p50_ms']} p99 {row['p99_ms']} "
              f"lost {row['lost']} of {row['deliveries_expected']}")


if __name__ == "__main__":
    main()
