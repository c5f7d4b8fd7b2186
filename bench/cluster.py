"""Several processes: fan-out latency and webhook throughput through nginx.

Run from the repository root: ``python bench/cluster.py`` (``make bench`` does).
Prints a summary and writes ``bench/results/cluster.json``.

Two set-ups, one after the other in the same run, each the real programs the
deployment test starts (tests/deployment_helpers.py), behind the same nginx
configuration (nginx.conf.example rendered for loopback, TLS included):

- ``one``: one uWSGI process, SQLite, no Redis (what a single host runs);
- ``two``: two uWSGI processes sharing Redis (Socket.IO, lockout) and
  PostgreSQL (call log).

In each:

1. Fan-out. ``--clients`` Socket.IO clients (alice and bob, both ringing on
   one number), pinned half to each process by nginx's route cookie (all to the
   one process in ``one``). ``--events`` signed status callbacks, one at a time,
   always sent to the first process; for each, the time from sending the POST
   to each client's ``call_status`` event. With two processes half the clients
   hear it through Redis.
2. Webhook throughput. ``--posts`` signed status callbacks (each a new leg of
   one of 100 calls in progress) from ``--concurrency`` senders without a route
   cookie, so nginx spreads them over the processes, while the clients stay
   connected and receive every event.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

import socketio  # noqa: E402
from conftest import PASSWORDS, csrf_token_from  # noqa: E402
from deployment_helpers import UPSTREAM_HEADER, Cluster  # noqa: E402

NUMBER = "+441595000001"
CALLER = "+447700900123"
ROOT_CALL = "CA" + "b" * 32
ROOTS = 100  # calls in progress during the throughput run


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def latency_summary(seconds: list[float]) -> dict:
    ms = [value * 1000 for value in seconds]
    if not ms:
        return {"samples": 0}
    return {
        "samples": len(ms),
        "p50_ms": round(percentile(ms, 0.50), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "p99_ms": round(percentile(ms, 0.99), 2),
        "max_ms": round(max(ms), 2),
        "mean_ms": round(statistics.fmean(ms), 2),
    }


def root_call(index: int) -> str:
    return f"CA00{index:030x}"


def status_form(leg: str, root: str = ROOT_CALL, status: str = "ringing", sequence: int = 0) -> dict[str, str]:
    return {"CallSid": leg, "ParentCallSid": root, "CallStatus": status, "SequenceNumber": str(sequence),
            "From": CALLER, "To": "client:bob", "Direction": "outbound-dial"}


class Listener:
    """One browser: logged in through nginx, pinned to a process, timing every call_status it hears."""

    def __init__(self, cluster: Cluster, name: str, instance, sent: dict[str, float], arrived: threading.Condition):
        self.session = cluster.session(instance)
        page = self.session.get(cluster.url + "/login", timeout=30)
        response = self.session.post(cluster.url + "/login", allow_redirects=False, timeout=30,
                                     headers={"Referer": cluster.url + "/login"},
                                     data={"username": name, "password": PASSWORDS[name],
                                           "csrf_token": csrf_token_from(page.text)})
        assert response.status_code == 302, response.text
        self.latencies: dict[str, float] = {}
        self.sent = sent
        self.arrived = arrived
        self.client = socketio.Client(http_session=self.session, reconnection=False)
        self.client.on("call_status", self._heard)
        self.client.connect(cluster.url, transports=["websocket"], wait_timeout=30)

    def _heard(self, payload: dict) -> None:
        now = time.perf_counter()
        sent = self.sent.get(payload["call_sid"])
        if sent is not None:
            with self.arrived:
                self.latencies[payload["call_sid"]] = now - sent
                self.arrived.notify_all()

    def close(self) -> None:
        self.client.disconnect()


def measure(cluster: Cluster, clients: int, events: int, posts: int, concurrency: int) -> dict:
    sent: dict[str, float] = {}
    arrived = threading.Condition()
    names = ["alice", "bob"]
    listeners = [Listener(cluster, names[i % 2], cluster.apps[i % len(cluster.apps)], sent, arrived)
                 for i in range(clients)]
    try:
        response = cluster.post_signed("/voice", {"CallSid": ROOT_CALL, "From": CALLER, "To": NUMBER},
                                       cluster.apps[0])
        assert response.status_code == 200, response.text

        # 1. fan-out, one event at a time
        sender = cluster.session(cluster.apps[0])
        lost = 0
        for index in range(events):
            leg = f"CAfa{index:030x}"
            form = status_form(leg)
            headers = {"X-Twilio-Signature": cluster.team.sign("/voice/status", form)}
            sent[leg] = time.perf_counter()
            reply = sender.post(cluster.url + "/voice/status", data=form, headers=headers, timeout=30)
            assert reply.status_code == 204, reply.text
            with arrived:
                arrived.wait_for(lambda leg=leg: all(leg in listener.latencies for listener in listeners), 10)
            lost += sum(leg not in listener.latencies for listener in listeners)
        fanout = [listener.latencies[leg] for listener in listeners for leg in listener.latencies
                  if leg.startswith("CAfan")]
        by_process = {"same": [], "other": []}
        for position, listener in enumerate(listeners):
            side = "same" if position % len(cluster.apps) == 0 else "other"
            by_process[side] += [value for leg, value in listener.latencies.items() if leg.startswith("CAfan")]

        # 2. webhook throughput, spread by nginx, over calls in progress at once (a ring
        # group has a few legs, not a thousand: legs of one call would queue on its row lock)
        for index in range(ROOTS):
            response = cluster.post_signed("/voice", {"CallSid": root_call(index), "From": CALLER, "To": NUMBER})
            assert response.status_code == 200, response.text
        local = threading.local()

        def post(index: int) -> tuple[float, str, int]:
            if not hasattr(local, "session"):
                local.session = cluster.session()
                local.session.cookies.clear()
            leg = f"CAc0{index:030x}"
            form = status_form(leg, root_call(index % ROOTS))
            headers = {"X-Twilio-Signature": cluster.team.sign("/voice/status", form)}
            started = time.perf_counter()
            sent[leg] = started
            reply = local.session.post(cluster.url + "/voice/status", data=form, headers=headers, timeout=60)
            # A new session for the next post: no route cookie, so nginx picks the process anew.
            local.session.cookies.clear()
            return time.perf_counter() - started, reply.headers.get(UPSTREAM_HEADER, "?"), reply.status_code

        started = time.perf_counter()
        with ThreadPoolExecutor(concurrency) as pool:
            results = list(pool.map(post, range(posts)))
        elapsed = time.perf_counter() - started
        with arrived:
            arrived.wait_for(lambda: all(
                sum(leg.startswith("CAthr") for leg in listener.latencies) == posts for listener in listeners), 30)
        delivered = sum(sum(leg.startswith("CAthr") for leg in listener.latencies) for listener in listeners)
        statuses = Counter(status for _, _, status in results)
        processes = Counter(Path(upstream.split(":", 1)[-1]).stem for _, upstream, _ in results)
        return {
            "fanout": {"clients": clients, "events": events, "lost": lost, **latency_summary(fanout),
                       "same_process": latency_summary(by_process["same"]),
                       "other_process": latency_summary(by_process["other"])},
            "webhooks": {"posts": posts, "concurrency": concurrency, "seconds": round(elapsed, 2),
                         "per_second": round(posts / elapsed, 1), "statuses": dict(statuses),
                         "by_process": dict(processes),
                         **latency_summary([seconds for seconds, _, _ in results]),
                         "events_delivered": delivered, "events_expected": posts * clients},
        }
    finally:
        for listener in listeners:
            listener.close()


def run(setup: str, base: Path, args: argparse.Namespace) -> dict:
    shared = setup == "two"
    cluster = Cluster(base / setup, instances=2 if shared else 1, shared=shared, with_prefix=False)
    cluster.start()
    try:
        return measure(cluster, args.clients, args.events, args.posts, args.concurrency)
    finally:
        cluster.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--events", type=int, default=200)
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "cluster.json")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="shetphone-bench-cluster-"))
    results = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
                    "load_average": os.getloadavg()},
        "parameters": {"clients": args.clients, "events": args.events, "posts": args.posts,
                       "concurrency": args.concurrency},
        "setups": {
            "one": "one uWSGI process, SQLite, no Redis, behind nginx (TLS)",
            "two": "two uWSGI processes, Redis, PostgreSQL, behind nginx (TLS, sticky by cookie)",
        },
    }
    for setup in ("one", "two"):
        print(f"{setup}: {results['setups'][setup]} ...", flush=True)
        results[setup] = run(setup, base, args)
        print(json.dumps(results[setup], indent=2), flush=True)
    results["machine"]["load_average_after"] = os.getloadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
