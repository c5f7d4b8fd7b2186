"""The page as an installed app, behind nginx's path-prefix form: the web app manifest as
Chromium reads it, and the service worker, which serves the built files from its cache
(the static route stopped) and never answers an API or Twilio route.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Browser, Page, expect

from browser.browser_helpers import (
    MANIFEST,
    LiveServer,
    PageProblems,
    PrefixProxy,
    log_in,
    make_team_files,
    new_context,
    png_size,
    start_phone,
    start_server,
)
from shetphone.web.assets import ENTRIES, Manifest

pytestmark = pytest.mark.browser

PREFIX = "/shetphone"
# Everything the worker must leave to the network, as the page or Twilio would ask for it.
API_ROUTES = ["token", "calls?limit=50", "presets", "socket.io/?EIO=4&transport=polling", "voice",
              "voice/status", "voicemail/RE" + "ab" * 16, "healthz"]


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    """This module's server (it replaces conftest's): it trusts one proxy's X-Forwarded-* headers."""
    live = start_server(make_team_files(tmp_path_factory.mktemp("prefixed"), extra="proxy_hops = 1"))
    yield live
    live.stop()


@pytest.fixture(scope="module")
def proxy(server) -> Iterator[PrefixProxy]:
    """In front of the server: strips /shetphone and says so in X-Forwarded-Prefix."""
    front = PrefixProxy(server.url, PREFIX)
    yield front
    front.close()


@pytest.fixture
def open_prefixed(browser: Browser, server: LiveServer, proxy: PrefixProxy) -> Iterator[Callable[[], Page]]:
    """The dialer at /shetphone/, logged in, its worker in control; afterwards no CSP violation, no page error."""
    opened: list[tuple[Page, PageProblems]] = []

    def open_page() -> Page:
        context = new_context(browser, server, origin=proxy.origin, service_workers="allow")
        log_in(context, server)  # a cookie is for the host, whichever port
        page = context.new_page()
        opened.append((page, PageProblems(page)))
        page.goto(proxy.url + "/")
        expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
        page.wait_for_function("() => navigator.serviceWorker.controller !== null")
        return page

    yield open_page
    for page, problems in opened:
        violations, errors = problems.csp(page), list(problems.errors)
        page.context.close()
        assert violations == [], f"the Content-Security-Policy blocked: {violations}"
        assert errors == [], f"the page threw: {errors}"


def cached_urls(page: Page) -> list[str]:
    return page.evaluate("""async () => {
        const urls = [];
        for (const name of await caches.keys()) {
            for (const request of await (await caches.open(name)).keys()) urls.push(request.url);
        }
        return urls;
    }""")


def first_load_files() -> set[str]:
    """The built files the two pages load first, from Vite's manifest: what the worker must keep."""
    files = set()
    for source in ENTRIES.values():
        entry = Manifest(MANIFEST).entry(source, lambda file: file)
        files |= {*entry.scripts, *entry.preloads, *entry.styles}
    return files


def test_the_manifest_is_valid_installable_and_scoped_to_the_prefix(open_prefixed, proxy):
    page = open_prefixed()
    cdp = page.context.new_cdp_session(page)
    app = cdp.send("Page.getAppManifest")  # Chromium's own reading of it
    assert app["url"] == f"{proxy.url}/manifest.webmanifest"
    assert app["errors"] == []
    manifest = json.loads(app["data"])
    assert manifest["name"] == manifest["short_name"] == "Shetphone"
    assert manifest["start_url"] == manifest["scope"] == f"{PREFIX}/"
    assert manifest["display"] == "standalone"
    assert manifest["theme_color"] and manifest["background_color"]
    # Chromium's install check fetches the icons too; in a Playwright context its one objection is
    # that the context is incognito-like, which no page can change.
    installability = cdp.send("Page.getInstallabilityErrors")["installabilityErrors"]
    assert [error["errorId"] for error in installability] == ["in-incognito"]

    sizes = set()
    for icon in manifest["icons"]:
        assert icon["src"].startswith(f"{PREFIX}/static/dist/icons/")
        response = page.request.get(proxy.origin + icon["src"])
        assert response.ok, icon["src"]
        assert response.headers["content-type"].startswith(icon["type"])
        if icon["type"] == "image/png":
            width, height = png_size(response.body())
            assert icon["sizes"] == f"{width}x{height}"
            sizes.add((width, icon["purpose"]))
    assert {(192, "any"), (512, "any"), (512, "maskable")} <= sizes

    favicon = page.locator('link[rel="icon"][type="image/svg+xml"]').get_attribute("href")
    assert page.request.get(proxy.origin + favicon).headers["content-type"].startswith("image/svg+xml")
    registration = page.evaluate("() => navigator.serviceWorker.ready.then((r) => [r.scope, r.active.scriptURL])")
    assert registration == [f"{proxy.url}/", f"{proxy.url}/sw.js"]


def test_the_worker_serves_the_built_files_with_the_static_route_stopped(open_prefixed, proxy):
    page = open_prefixed()
    start_phone(page)
    page.evaluate("() => navigator.serviceWorker.ready.then(() => true)")  # installed: its files are in the cache
    dist = f"{proxy.url}/static/dist/"
    assert {dist + file for file in first_load_files()} <= set(cached_urls(page))

    proxy.stopped.add("/static/")
    try:
        some_asset = dist + sorted(first_load_files())[0]
        assert page.request.get(some_asset).status == 503  # really stopped
        page.context.new_cdp_session(page).send("Network.clearBrowserCache")  # only the worker's cache is left
        responses = []
        page.on("response", lambda response: responses.append(response))
        since = len(proxy.paths)
        page.reload()
        expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
        assert page.evaluate("getComputedStyle(document.querySelector('.keypad')).display") == "grid"  # the CSS
        start_phone(page)  # the JS works: the phone starts again
        assets = [response for response in responses if response.url.startswith(dist + "assets/")]
        assert assets and all(response.from_service_worker and response.ok for response in assets)
        assert [path for path in proxy.paths[since:] if path.startswith("/static/dist/assets/")] == []
    finally:
        proxy.stopped.clear()


def test_the_worker_never_answers_an_api_or_twilio_route(open_prefixed, proxy):
    page = open_prefixed()
    start_phone(page)  # /token, /presets, /calls and Socket.IO have all been asked for once
    assert all(url.startswith(f"{proxy.url}/static/dist/") for url in cached_urls(page))

    proxy.stopped.update("/" + route.split("?")[0] for route in API_ROUTES)
    try:
        since = len(proxy.paths)
        statuses = page.evaluate("""async (routes) => {
            const statuses = {};
            for (const route of routes) {
                statuses[route] = (await fetch(route, {credentials: 'same-origin'})).status;
            }
            return statuses;
        }""", API_ROUTES)
        # Each answer is the stopped upstream's, never one kept from before; each request reached the network.
        assert statuses == dict.fromkeys(API_ROUTES, 503)
        reached = proxy.paths[since:]
        assert all(any(path == "/" + route for path in reached) for route in API_ROUTES), reached
    finally:
        proxy.stopped.clear()
    assert all(url.startswith(f"{proxy.url}/static/dist/") for url in cached_urls(page))
