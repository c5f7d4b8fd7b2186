"""Browser fixtures: Debian's chromium through Playwright, the real server, a logged-in page.

One browser per session, one server per test module; each test gets a fresh
browser context (its own cookies), so tests in a module do not see each other.
"""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from browser.browser_helpers import (
    CHROMIUM,
    CHROMIUM_ARGS,
    MANIFEST,
    ROOT,
    LiveServer,
    PageProblems,
    Teammate,
    log_in,
    make_team_files,
    new_context,
    start_server,
)


@pytest.fixture(scope="session")
def built_frontend() -> Path:
    """The tests run against the production build; `make test` builds it, this covers a bare pytest."""
    if not MANIFEST.exists():
        subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=ROOT / "frontend", check=True)
        subprocess.run(["npm", "run", "build"], cwd=ROOT / "frontend", check=True)
    return MANIFEST


@pytest.fixture(scope="session")
def browser(built_frontend) -> Iterator[Browser]:
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="module")
def server(tmp_path_factory) -> Iterator[LiveServer]:
    live = start_server(make_team_files(tmp_path_factory.mktemp("team")))
    yield live
    live.stop()


@pytest.fixture
def open_dialer(browser: Browser, server: LiveServer) -> Iterator[Callable[..., Page]]:
    """Open the dialer, logged in, with the fake Device; after the test, no CSP violation and no page error."""
    opened: list[tuple[Page, PageProblems]] = []

    def open_page(path: str = "/", *, name: str = "alice", viewport: dict | None = None,
                  fake_device: bool = True, init_script: str | None = None,
                  before_load: Callable[[Page], None] | None = None) -> Page:
        context = new_context(browser, server, fake_device=fake_device, viewport=viewport)
        if init_script:
            context.add_init_script(init_script)
        log_in(context, server, name)
        page = context.new_page()
        problems = PageProblems(page)
        opened.append((page, problems))
        if before_load:  # routes that must see the page's first requests (its Socket.IO connection)
            before_load(page)
        page.goto(path)
        expect(page.get_by_role("button", name="Call", exact=True)).to_be_visible()
        return page

    yield open_page
    for page, problems in opened:
        violations = problems.csp(page)
        errors = list(problems.errors)
        page.context.close()
        assert violations == [], f"the Content-Security-Policy blocked: {violations}"
        assert errors == [], f"the page threw: {errors}"


@pytest.fixture
def bob(server: LiveServer) -> Iterator[Teammate]:
    """bob's page elsewhere, a Socket.IO client; its phone is not started until ``bob.phone(True)``."""
    teammate = Teammate(server)
    yield teammate
    teammate.close()
