"""A call-control request's own latency, and the server's CPU per request, with Twilio answering at once.

Run from the repository root: ``python bench/control.py`` (``make bench`` does).
Prints a table and writes ``bench/results/control.json``.

The real server (``python app.py``, gevent, SQLite) on loopback, its
``twilio_api_base`` at the Twilio stand-in (tests/twilio_standin.py) in this
process, which answers every REST request as soon as it has acted on it. Calls
are set up through the stand-in as Twilio would: a caller rings, alice's browser
answers. Then, one request at a time:

1. the first control request of each call (Hold: the REST redirect of alice's leg
   into the call's conference), then the callbacks it brings (not timed);
2. ``POST /calls/SID/hold``, Hold and Resume in turn, round the calls (one REST
   update of the caller's participant each), each request's callbacks posted
   after it (not timed), so every request finds its call idle.

For each: from just before the POST to the REST request reaching the stand-in
("to Twilio": the route's own work: login, CSRF, the stored state, the plan, the
claim), and to the answer ("whole": with storing the outcome, the emit and the
answer). The server's CPU (utime + stime from /proc) is summed over the timed
requests only.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import requests

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from call_control_helpers import answered_incoming  # noqa: E402
from conftest import csrf_token_from, live_login, make_team_files, start_server  # noqa: E402
from twilio_standin import HttpCallbacks, TwilioStandIn  # noqa: E402
from webhooks import percentile  # noqa: E402  (bench/ is on sys.path when run as a script)

TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime


def summary(values_s: list[float]) -> dict:
    ms = [value * 1000 for value in values_s]
    return {"requests": len(ms), "p50_ms": round(percentile(ms, 0.50), 2), "p99_ms": round(percentile(ms, 0.99), 2)}


class Measured:
    """Timed control requests: to the REST request reaching the stand-in, to the answer, and the server's CPU."""

    def __init__(self, server, standin: TwilioStandIn, session: requests.Session, csrf: str):
        self.server, self.standin, self.session, self.csrf = server, standin, session, csrf
        self.to_twilio: list[float] = []
        self.whole: list[float] = []
        self.cpu = 0.0
        self.refused = 0

    def post(self, root: str, hold: bool) -> None:
        reached = []
        self.standin.while_answering(lambda: reached.append(time.perf_counter()))
        cpu_before = cpu_seconds(self.server.process.pid)
        started = time.perf_counter()
        answer = self.session.post(f"{self.server.url}/calls/{root}/hold", json={"hold": hold},
                                   headers={"X-CSRFToken": self.csrf}, timeout=30)
        ended = time.perf_counter()
        self.cpu += cpu_seconds(self.server.process.pid) - cpu_before
        if answer.status_code != 200 or not reached:
            self.refused += 1
            return
        self.to_twilio.append(reached[0] - started)
        self.whole.append(ended - started)

    def result(self) -> dict:
        return {"to_twilio": summary(self.to_twilio), "whole": summary(self.whole), "refused": self.refused,
                "server_cpu_ms_per_request": round(1000 * self.cpu / max(1, len(self.whole) + self.refused), 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=50, help="calls set up (each one's first request is timed)")
    parser.add_argument("--requests", type=int, default=1000, help="hold and resume requests, round the calls")
    args = parser.parse_args()

    standin = TwilioStandIn()  # manual: callbacks are posted between requests, never during one
    files = make_team_files(Path(tempfile.mkdtemp(prefix="shetphone-bench-")),
                            extra=f"twilio_api_base = {standin.url}")
    standin.accept(files.environ["TWILIO_ACCOUNT_SID"], files.environ["TWILIO_AUTH_TOKEN"])
    server = start_server(files)
    try:
        standin.connect(HttpCallbacks(), server.url)
        session = live_login(server, "alice")
        csrf = csrf_token_from(session.get(server.url + "/", timeout=10).text)
        roots = [answered_incoming(standin)[0].sid for _ in range(args.calls)]

        first = Measured(server, standin, session, csrf)
        for root in roots:
            first.post(root, True)  # into the conference (REST redirect), the caller to be held
            standin.run()
        toggles = Measured(server, standin, session, csrf)
        for index in range(args.requests):
            toggles.post(roots[index % len(roots)], hold=bool((index // len(roots)) % 2))
            standin.run()
    finally:
        server.stop()
        standin.stop()

    load = os.getloadavg()[0]
    results = {"machine": {"cpus": os.cpu_count(), "python": platform.python_version(), "load_average": load},
               "first_request": first.result(), "hold_and_resume": toggles.result()}
    out = ROOT / "bench" / "results"
    out.mkdir(parents=True, exist_ok=True)
    (out / "control.json").write_text(json.dumps(results, indent=2))

    print(f"Control requests, one at a time (ms); load average {load:.2f}")
    print(f"{'request':<18} {'to Twilio p50':>14} {'p99':>8} {'whole p50':>10} {'p99':>8} {'CPU ms':>7} {'refused':>8}")
    for name, row in (("first (move)", results["first_request"]), ("hold / resume", results["hold_and_resume"])):
        print(f"{name:<18} {row['to_twilio']['p50_ms']:>14} {row['to_twilio']['p99_ms']:>8} "
              f"{row['whole']['p50_ms']:>10} {row['whole']['p99_ms']:>8} {row['server_cpu_ms_per_request']:>7} "
              f"{row['refused']:>8}")


if __name__ == "__main__":
    main()
