"""The dialer page's weight and time to interactive, in headless Chromium on loopback.

Run from the repository root: ``python bench/page.py`` (``make bench`` does).
Prints a table and writes ``bench/results/page.json``.

1. Weight: every response of a first load of ``/`` (logged in, empty cache),
   the page's and its service worker's (which keeps the built files), and the
   web app manifest, raw and gzipped (level 9, as Vite reports and nginx's
   ``gzip_static`` would serve). The Voice SDK chunk, fetched on Start, is
   reported on its own.
2. Time to interactive: from navigation start to the moment the Call button
   exists with the app mounted (a MutationObserver records performance.now()),
   cold (a fresh browser context each time), warm (a reload: the hashed assets
   come from the HTTP cache, immutable), and the second open of an installed
   window (a new window once the service worker is active, with the HTTP cache
   cleared: the built files come from the worker's cache alone), beside a
   second window without a worker (HTTP cache only). Also DOMContentLoaded and load.
"""

from __future__ import annotations

import argparse
import gzip
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from browser.browser_helpers import CHROMIUM, CHROMIUM_ARGS, DESKTOP, MANIFEST, log_in  # noqa: E402
from conftest import make_team_files, start_server  # noqa: E402
from playwright.sync_api import sync_playwright  # noqa: E402

BUDGET_GZIP = 150 * 1024  # the limit for the first load: JS, CSS, the service worker, the manifest, icons
BUDGETED = ("js", "css", "worker", "manifest", "icon")

# Records when the dialer became usable: the Call button is in the page (Vue mounted, handlers bound).
INTERACTIVE_PROBE = """
window.__interactiveAt = null;
new MutationObserver((changes, observer) => {
  if (document.querySelector('#app .actions button.call')) {
    window.__interactiveAt = performance.now();
    observer.disconnect();
  }
}).observe(document, {childList: true, subtree: true});
"""


def gzipped(data: bytes) -> int:
    return len(gzip.compress(data, compresslevel=9, mtime=0))


def ensure_built() -> None:
    if not MANIFEST.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT / "frontend", check=True)
        subprocess.run(["npm", "run", "build"], cwd=ROOT / "frontend", check=True)


def kind_of(url: str, content_type: str) -> str:
    path = url.split("?")[0]
    if "/assets/" in path and path.endswith(".js"):
        return "js"
    if path.endswith(".css"):
        return "css"
    if path.endswith("/sw.js"):
        return "worker"
    if path.endswith(".webmanifest"):
        return "manifest"
    if "/icons/" in path:
        return "icon"
    if "text/html" in content_type:
        return "html"
    return "other"


WORKER_READY = "() => navigator.serviceWorker.ready.then(() => navigator.serviceWorker.controller !== null)"


def first_load_weight(browser, server) -> dict:
    context = browser.new_context(base_url=server.url, viewport=DESKTOP)
    log_in(context, server)
    page = context.new_page()
    responses = []
    context.on("response", lambda response: responses.append(response))  # the worker's requests too
    page.goto("/", wait_until="networkidle")
    page.wait_for_selector("#app .actions button.call")
    page.wait_for_function(WORKER_READY)  # installed: what it keeps is fetched
    page.wait_for_load_state("networkidle")
    # Chromium fetches the manifest when it looks at installing; fetch it as it would.
    responses.append(context.request.get(server.url + "/manifest.webmanifest"))
    resources, seen = [], set()
    for response in responses:
        url = response.url
        if "/socket.io/" in url or response.status != 200 or url in seen:
            continue  # the live connection is not page weight; a file kept from the HTTP cache is counted once
        seen.add(url)
        body = response.body()
        path = url.removeprefix(server.url).split("?")[0]
        if not body and path.startswith("/static/"):
            body = (ROOT / path.lstrip("/")).read_bytes()  # fetched by the worker: Playwright has no body for it
        kind = kind_of(url, response.headers.get("content-type", ""))
        resources.append({"url": url.removeprefix(server.url), "kind": kind, "bytes": len(body),
                          "gzip_bytes": gzipped(body)})
    context.close()
    assets = [item for item in resources if item["kind"] in ("js", "css")]
    budgeted = [item for item in resources if item["kind"] in BUDGETED]
    sdk = next(path for path in (ROOT / "static" / "dist" / "assets").glob("twilio-*.js"))
    sdk_bytes = sdk.read_bytes()
    return {
        "resources": resources,
        "js_css_gzip_bytes": sum(item["gzip_bytes"] for item in assets),
        "js_css_bytes": sum(item["bytes"] for item in assets),
        "first_load_gzip_bytes": sum(item["gzip_bytes"] for item in budgeted),
        "first_load_bytes": sum(item["bytes"] for item in budgeted),
        "total_gzip_bytes": sum(item["gzip_bytes"] for item in resources),
        "budget_gzip_bytes": BUDGET_GZIP,
        "voice_sdk_on_start": {"file": sdk.name, "bytes": len(sdk_bytes), "gzip_bytes": gzipped(sdk_bytes)},
    }


def timings(page) -> dict:
    page.wait_for_function("window.__interactiveAt !== null")
    return page.evaluate("""() => {
        const nav = performance.getEntriesByType('navigation')[0];
        return {interactive_ms: window.__interactiveAt, dom_content_loaded_ms: nav.domContentLoadedEventEnd,
                load_ms: nav.loadEventEnd || null};
    }""")


def time_to_interactive(browser, server, runs: int) -> dict:
    cold, warm, second_open, second_open_no_worker = [], [], [], []
    for _ in range(runs):
        context = browser.new_context(base_url=server.url, viewport=DESKTOP)
        context.add_init_script(INTERACTIVE_PROBE)
        log_in(context, server)
        page = context.new_page()
        page.goto("/")
        cold.append(timings(page))
        page.reload()
        warm.append(timings(page))
        page.wait_for_function(WORKER_READY)
        # The installed window closed and opened again: only the worker's cache holds the files.
        context.new_cdp_session(page).send("Network.clearBrowserCache")
        page.close()
        window = context.new_page()
        window.goto("/")
        second_open.append(timings(window))
        assert window.evaluate(ASSETS_FROM_WORKER), "the second open did not take its files from the worker"
        context.close()
        # The same without a worker (as before it): a new window, the files from the HTTP cache.
        context = browser.new_context(base_url=server.url, viewport=DESKTOP, service_workers="block")
        context.add_init_script(INTERACTIVE_PROBE)
        log_in(context, server)
        page = context.new_page()
        page.goto("/")
        timings(page)
        page.close()
        window = context.new_page()
        window.goto("/")
        second_open_no_worker.append(timings(window))
        context.close()
    return {"cold": summarise(cold), "warm": summarise(warm), "second_open": summarise(second_open),
            "second_open_no_worker": summarise(second_open_no_worker), "runs": runs}


# Every script and style of the page came through the service worker (Resource Timing says so).
ASSETS_FROM_WORKER = """() => performance.getEntriesByType('resource')
    .filter((entry) => entry.name.includes('/static/dist/assets/'))
    .every((entry) => entry.workerStart > 0)"""


def summarise(samples: list[dict]) -> dict:
    out = {}
    for key in ("interactive_ms", "dom_content_loaded_ms", "load_ms"):
        values = sorted(sample[key] for sample in samples if sample[key] is not None)
        if values:
            out[key] = {"p50": round(statistics.median(values), 1),
                        "p90": round(values[min(len(values) - 1, round(0.9 * (len(values) - 1)))], 1),
                        "min": round(values[0], 1)}
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="page loads for time to interactive (default 20)")
    args = parser.parse_args()
    ensure_built()
    with tempfile.TemporaryDirectory() as directory:
        server = start_server(make_team_files(Path(directory)))
        try:
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                started = time.monotonic()
                weight = first_load_weight(browser, server)
                tti = time_to_interactive(browser, server, args.runs)
                browser.close()
                version = browser.version
        finally:
            server.stop()
    result = {
        "benchmark": "page",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"python": platform.python_version(), "platform": platform.platform(), "chromium": version},
        "weight": weight,
        "time_to_interactive": tti,
        "seconds": round(time.monotonic() - started, 1),
    }
    out = ROOT / "bench" / "results" / "page.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")

    print(f"{'first load':<28}{'bytes':>10}{'gzip':>10}")
    for item in weight["resources"]:
        print(f"{item['url'][:27]:<28}{item['bytes']:>10,}{item['gzip_bytes']:>10,}")
    print(f"{'JS + CSS':<28}{weight['js_css_bytes']:>10,}{weight['js_css_gzip_bytes']:>10,}")
    print(f"{'first load, budgeted':<28}{weight['first_load_bytes']:>10,}"
          f"{weight['first_load_gzip_bytes']:>10,}   (budget {BUDGET_GZIP:,} gzipped)")
    sdk = weight["voice_sdk_on_start"]
    print(f"{'Voice SDK, on Start':<28}{sdk['bytes']:>10,}{sdk['gzip_bytes']:>10,}")
    for label in ("cold", "warm", "second_open", "second_open_no_worker"):
        numbers = tti[label]["interactive_ms"]
        print(f"interactive, {label}: p50 {numbers['p50']} ms, p90 {numbers['p90']} ms ({args.runs} loads)")
    print(f"wrote {out.relative_to(ROOT)}")
    return 0 if weight["first_load_gzip_bytes"] <= BUDGET_GZIP else 1


if __name__ == "__main__":
    sys.exit(main())
