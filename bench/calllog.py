"""Benchmark the call log store alone (no HTTP, no Socket.IO).

    python bench/calllog.py [--database URL] [--calls N] [--rows N]

Measures, on a fresh database (a temporary SQLite file unless --database):

- status callbacks recorded per second: ring-group calls (two client legs, four
  callbacks each, plus a repeat of each callback as Twilio's retries would be),
  by one writer and by four processes writing at once;
- ``calls_for`` latency (p50, p99) with 100,000 calls in the table, for a user
  of one number and a client, and for a user of three numbers;
- ``calls_in_progress`` latency with the same table.

Writes bench/results/calllog.json and prints it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import platform
import random
import sqlite3
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shetphone.store import Store  # noqa: E402 - after the path is set

NUMBERS = [f"+4415950000{i:02d}" for i in range(1, 9)]
CLIENTS = ["alice", "bob", "carol", "dave"]
CALLER = "+447700900123"
# One answered ring-group call: alice picks up, bob's leg is canceled.
LEG_LIVES = {"a": ["initiated", "ringing", "in-progress", "completed"], "b": ["initiated", "ringing", "canceled"]}


def ring_group_callbacks(root: str) -> list[dict[str, str]]:
    """Every callback of one ring-group call, each delivered twice as Twilio's retries would."""
    forms = []
    for suffix, life in LEG_LIVES.items():
        for sequence, status in enumerate(life):
            form = {
                "CallSid": root + suffix,
                "ParentCallSid": root,
                "CallStatus": status,
                "SequenceNumber": str(sequence),
                "Timestamp": "Sun, 22 Nov 2026 16:03:27 +0000",
                "CallDuration": "30" if status == "completed" else "",
                "From": CALLER,
                "To": "client:alice",
                "Direction": "outbound-dial",
            }
            forms += [form, form]
    return forms


def write_calls(database_url: str, prefix: str, calls: int) -> tuple[int, int, float, float]:
    """Open `calls` ring-group calls and record all their callbacks.

    Returns (applied, ignored, wall seconds, CPU seconds of this process): on a
    shared machine the CPU time says more about the code than the wall time.
    """
    store = Store(database_url)
    log = store.calls
    applied = ignored = 0
    started, cpu_started = time.perf_counter(), time.process_time()
    for i in range(calls):
        root = f"CA{prefix}{i:08d}"
        log.open_call(root, direction="inbound", number=NUMBERS[i % 3], from_=CALLER, to=NUMBERS[i % 3], client=None)
        for form in ring_group_callbacks(root):
            if log.record_status(form) is None:
                ignored += 1
            else:
                applied += 1
    elapsed, cpu = time.perf_counter() - started, time.process_time() - cpu_started
    store.close()
    return applied, ignored, elapsed, cpu


def _write_calls_star(args: tuple[str, str, int]) -> tuple[int, int, float, float]:
    return write_calls(*args)


def bench_callbacks(database_url: str, calls: int) -> dict:
    applied, ignored, elapsed, cpu = write_calls(database_url, "single", calls)
    callbacks = applied + ignored
    single = {
        "calls": calls,
        "callbacks": callbacks,
        "applied": applied,
        "repeats_ignored": ignored,
        "seconds": round(elapsed, 3),
        "callbacks_per_second": round(callbacks / elapsed),
        "ms_per_callback": round(elapsed * 1000 / callbacks, 3),
        "cpu_ms_per_callback": round(cpu * 1000 / callbacks, 3),
    }
    processes = 4
    started = time.perf_counter()
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_write_calls_star, [(database_url, f"p{n}", calls // processes) for n in range(processes)])
    wall = time.perf_counter() - started
    total = sum(applied + ignored for applied, ignored, _, _ in results)
    # Open calls are included in the per-process time: the slowest process bounds the rate.
    slowest = max(seconds for _, _, seconds, _ in results)
    cpu_total = sum(cpu for _, _, _, cpu in results)
    concurrent = {
        "processes": processes,
        "callbacks": total,
        "seconds_slowest_process": round(slowest, 3),
        "callbacks_per_second": round(total / slowest),
        "cpu_ms_per_callback": round(cpu_total * 1000 / total, 3),
        "wall_seconds_including_start": round(wall, 3),
    }
    return {"one_writer": single, "four_processes": concurrent}


def percentiles(samples: list[float], cpu_samples: list[float]) -> dict:
    ordered = sorted(samples)
    return {
        "cpu_mean_ms": round(statistics.fmean(cpu_samples) * 1000, 3),
        "p50_ms": round(statistics.median(ordered) * 1000, 3),
        "p99_ms": round(ordered[int(len(ordered) * 0.99) - 1] * 1000, 3),
        "max_ms": round(ordered[-1] * 1000, 3),
        "queries": len(ordered),
    }


def bench_listing(database_url: str, rows: int, queries: int) -> dict:
    store = Store(database_url)
    log = store.calls
    now = datetime.now(UTC)
    rng = random.Random(1)
    entries = []
    for i in range(rows):
        outbound = rng.random() < 0.4
        number = rng.choice(NUMBERS)
        entries.append(
            {
                "call_sid": f"CAhistory{i:024d}",
                "direction": "outbound" if outbound else "inbound",
                "number": number,
                "from": number if outbound else CALLER,
                "to": "+441632960001" if outbound else number,
                "client": rng.choice(CLIENTS) if outbound else None,
                "started_at": now - timedelta(seconds=rng.randrange(90 * 86400)),
                "status": rng.choice(["completed", "completed", "no-answer", "busy"]),
                "answered": True,
                "duration": rng.randrange(600),
            }
        )
    started = time.perf_counter()
    log.import_calls(entries)
    import_seconds = time.perf_counter() - started
    # A few live calls, so catch-up has something to find.
    for i in range(5):
        root = f"CAlive{i}"
        log.open_call(root, direction="inbound", number=NUMBERS[0], from_=CALLER, to=NUMBERS[0], client=None)
        log.record_status(
            {"CallSid": f"{root}a", "ParentCallSid": root, "CallStatus": "ringing", "SequenceNumber": "1"}
        )

    def timed(call, *args) -> dict:
        samples, cpu_samples = [], []
        for _ in range(queries):
            started, cpu_started = time.perf_counter(), time.process_time()
            result = call(*args)
            samples.append(time.perf_counter() - started)
            cpu_samples.append(time.process_time() - cpu_started)
        assert result, "the measured query found nothing"
        return percentiles(samples, cpu_samples)

    results = {
        "rows": rows,
        "import_seconds": round(import_seconds, 2),
        "calls_for_one_number_and_client_limit_50": timed(log.calls_for, [NUMBERS[0]], "alice", 50),
        "calls_for_three_numbers_limit_50": timed(log.calls_for, NUMBERS[:3], None, 50),
        "calls_for_one_number_limit_500": timed(log.calls_for, [NUMBERS[1]], None, 500),
        "calls_in_progress_one_number_and_client": timed(log.calls_in_progress, [NUMBERS[0]], "alice"),
    }
    store.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database", help="an empty database's SQLAlchemy URL (default: a temporary SQLite file)")
    parser.add_argument("--calls", type=int, default=2000, help="ring-group calls written per run")
    parser.add_argument("--rows", type=int, default=100_000, help="calls in the table for the listing")
    parser.add_argument("--queries", type=int, default=1000, help="timed queries per listing measurement")
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "calllog.json")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="shetphone-bench-") as workdir:
        writes_url = args.database or f"sqlite:///{workdir}/writes.sqlite3"
        listing_url = args.database or f"sqlite:///{workdir}/listing.sqlite3"
        report = {
            "what": "shetphone.store.CallLog alone, no HTTP",
            "database": "sqlite (temporary file, WAL, synchronous=NORMAL)" if not args.database else args.database,
            "python": platform.python_version(),
            "sqlite": sqlite3.sqlite_version,
            "machine": f"{platform.machine()}, {multiprocessing.cpu_count()} CPUs, {platform.system()}",
            "status_callbacks": bench_callbacks(writes_url, args.calls),
            "listing": bench_listing(listing_url, args.rows, args.queries),
        }
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
