"""The response headers that keep every page safe by default."""

from __future__ import annotations

import pytest
from conftest import login


def policy(response) -> dict[str, list[str]]:
    directives = {}
    for part in response.headers["Content-Security-Policy"].split(";"):
        name, *values = part.split()
        directives[name] = values
    return directives


@pytest.mark.parametrize("path", ["/login", "/healthz", "/no-such-page", "/"])
def test_every_response_carries_the_headers(client, path):
    login(client, "alice")
    response = client.get(path)
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["Referrer-Policy"] == "same-origin"
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Permissions-Policy"] == "microphone=(self), camera=(), geolocation=()"
    csp = policy(response)
    assert csp["frame-ancestors"] == ["'none'"]
    assert csp["base-uri"] == ["'self'"]
    assert csp["form-action"] == ["'self'"]
    assert csp["object-src"] == ["'none'"]


def test_the_policy_allows_our_assets_our_socket_and_twilio_only(client):
    csp = policy(client.get("/login", headers={"Host": "phone.example.test:8443"}))
    assert csp["default-src"] == ["'self'"]
    assert csp["script-src"] == ["'self'"]  # no inline script, no eval
    assert csp["style-src"] == ["'self'"]  # no inline style
    assert csp["img-src"] == ["'self'", "data:"]
    assert "blob:" in csp["media-src"] and "https://sdk.twilio.com" in csp["media-src"]  # the SDK's ringtones
    assert csp["worker-src"] == ["'self'"]  # the page's service worker; the SDK starts none
    assert csp["manifest-src"] == ["'self'"]
    connect = csp["connect-src"]
    assert connect[:3] == ["'self'", "ws://phone.example.test:8443", "wss://phone.example.test:8443"]
    assert {"wss://voice-js.roaming.twilio.com", "wss://*.twilio.com", "https://eventgw.twilio.com"} <= set(connect)
    assert not any(source in ("*", "https:", "wss:", "'unsafe-inline'", "'unsafe-eval'")
                   for values in csp.values() for source in values)


def test_a_strange_host_header_cannot_write_into_the_policy(client):
    response = client.get("/healthz", headers={"Host": "evil.test;script-src *"})
    csp = policy(response)
    assert csp["script-src"] == ["'self'"]
    assert not any("evil" in source for source in csp["connect-src"])


def test_the_dialer_has_no_inline_script_only_its_json_config(client):
    login(client, "alice")
    html = client.get("/").get_data(as_text=True)
    assert '<script type="application/json" id="shetphone-config">' in html
    scripts = html.split("<script")[1:]
    for script in scripts:
        opening = script.split(">", 1)[0]
        assert 'type="application/json"' in opening or " src=" in opening, opening
    assert "style=" not in html  # the CSP would block inline style attributes
