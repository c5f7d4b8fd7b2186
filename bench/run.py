"""``make bench``: every benchmark, one after another, each writing bench/results/NAME.json.

Run on a quiet machine: the figures in docs/performance.md come from this script.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ORDER = ["audio", "bridge", "calllog", "webhooks", "control", "page", "cluster"]


def main() -> int:
    names = sys.argv[1:] or ORDER
    failed = []
    for name in names:
        script = BENCH / f"{name}.py"
        print(f"\n=== {name} ({script.relative_to(BENCH.parent)}) ===", flush=True)
        started = time.monotonic()
        result = subprocess.run([sys.executable, str(script)], cwd=BENCH.parent)
        print(f"--- {name}: exit {result.returncode} in {time.monotonic() - started:.0f} s", flush=True)
        if result.returncode:
            failed.append(name)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
