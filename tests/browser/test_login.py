"""Logging in and out through the page, as a person does; the lockout says what happened."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from browser.browser_helpers import PASSWORDS, PageProblems, new_context, screenshot

pytestmark = pytest.mark.browser

# The tests of this module share one server and its lockout counter (per address):
# they run in file order, the lockout last.


def test_a_good_login_shows_who_is_logged_in_and_log_out_returns_to_the_login_page(browser, server):
    context = new_context(browser, server, fake_device=False)
    page = context.new_page()
    problems = PageProblems(page)
    page.goto("/")
    expect(page).to_have_url(server.url + "/login?next=/")
    expect(page.get_by_role("heading", name="Log in")).to_be_visible()
    screenshot(page, "login")

    page.get_by_label("User name").fill("alice")
    page.get_by_label("Password").fill(PASSWORDS["alice"])
    page.get_by_role("button", name="Log in").click()

    expect(page).to_have_url(server.url + "/")
    expect(page.get_by_test_id("identity")).to_have_text("alice")
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(server.url + "/login")
    page.goto("/")
    expect(page).to_have_url(server.url + "/login?next=/")
    assert problems.csp(page) == []
    context.close()


def test_a_wrong_password_is_refused_in_plain_words(browser, server):
    context = new_context(browser, server, fake_device=False)
    page = context.new_page()
    page.goto("/login")
    page.get_by_label("User name").fill("bob")
    page.get_by_label("Password").fill("not-his-password")
    with page.expect_response(lambda response: response.request.method == "POST") as answer:
        page.get_by_role("button", name="Log in").click()
    assert answer.value.status == 401
    expect(page.get_by_role("alert")).to_have_text("Wrong user name or password.")
    expect(page.get_by_label("User name")).to_have_value("bob")
    context.close()


def test_too_many_failures_lock_the_login_with_a_message(browser, server):
    context = new_context(browser, server, fake_device=False)
    page = context.new_page()
    page.goto("/login")
    statuses = []
    for _ in range(7):
        page.get_by_label("User name").fill("carol")
        page.get_by_label("Password").fill("guessing")
        with page.expect_response(lambda response: response.request.method == "POST") as answer:
            page.get_by_role("button", name="Log in").click()
        statuses.append(answer.value.status)
        if answer.value.status == 429:
            assert int(answer.value.headers["retry-after"]) > 0
            break
    assert statuses[-1] == 429, statuses
    expect(page.get_by_role("alert")).to_contain_text("Too many failed attempts")
    screenshot(page, "login-locked")
    context.close()
