"""The ``auth`` stream parameter: made by the app, checked by the bridge."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re

import pytest

from shetphone.stream_auth import CLOCK_SKEW, DEFAULT_TTL, MAX_TTL, StreamAuthError, mint, verify

KEY = "the-apps-secret-key"
CALL = "CA" + "1" * 32
NOW = 1_800_000_000.0


def test_a_minted_value_admits_its_own_call_and_target_until_it_expires():
    value = mint(KEY, CALL, "discord:123456789012345678", now=NOW)
    assert re.fullmatch(r"v1\.[0-9]+\.[A-Za-z0-9_-]{43}", value)
    grant = verify(KEY, value, CALL, "discord:123456789012345678", now=NOW + DEFAULT_TTL - 1)
    assert grant.expires == int(NOW) + DEFAULT_TTL
    assert grant.key == value.rsplit(".", 1)[1]


def test_the_value_is_the_documented_v1_format():
    """v1.EXPIRES.MAC: HMAC-SHA256 over JSON [CallSid, target, EXPIRES] with a key derived from the
    secret key, in unpadded base64url. Written out here so a change of format is a decision (a new
    version), not an accident that refuses the values in flight during an upgrade."""
    key = hmac.new(KEY.encode(), b"shetphone stream auth v1", hashlib.sha256).digest()
    message = json.dumps([CALL, "echo", 1_800_000_300], separators=(",", ":")).encode()
    mac = base64.urlsafe_b64encode(hmac.new(key, message, hashlib.sha256).digest()).rstrip(b"=").decode()
    assert mint(KEY, CALL, "echo", now=NOW) == f"v1.1800000300.{mac}"


@pytest.mark.parametrize(
    ("call_sid", "target", "key", "why"),
    [
        ("CA" + "2" * 32, "echo", KEY, "not made for this call and target"),
        (CALL, "discord:123456789012345678", KEY, "not made for this call and target"),
        (CALL, "echo", "another-secret-key", "not made for this call and target"),
        (CALL, "echo", "", "not made for this call and target"),
    ],
)
def test_a_value_admits_no_other_call_target_or_key(call_sid, target, key, why):
    value = mint(KEY, CALL, "echo", now=NOW)
    with pytest.raises(StreamAuthError, match=why):
        verify(key, value, call_sid, target, now=NOW)


def test_an_expired_value_is_refused():
    value = mint(KEY, CALL, "echo", now=NOW)
    verify(KEY, value, CALL, "echo", now=NOW + DEFAULT_TTL - 0.5)
    with pytest.raises(StreamAuthError, match="expired 0 s ago"):
        verify(KEY, value, CALL, "echo", now=NOW + DEFAULT_TTL)
    with pytest.raises(StreamAuthError, match="expired 3600 s ago"):
        verify(KEY, value, CALL, "echo", now=NOW + DEFAULT_TTL + 3600)


def test_a_later_expiry_written_into_a_value_breaks_its_mac():
    version, expires, mac = mint(KEY, CALL, "echo", now=NOW).split(".")
    stretched = f"{version}.{int(expires) + 86400}.{mac}"
    with pytest.raises(StreamAuthError, match="not made for this call"):
        verify(KEY, stretched, CALL, "echo", now=NOW + DEFAULT_TTL + 1)


def test_a_value_valid_for_longer_than_any_is_made_for_is_refused():
    value = mint(KEY, CALL, "echo", ttl=MAX_TTL, now=NOW)
    verify(KEY, value, CALL, "echo", now=NOW - CLOCK_SKEW)  # the app's clock a minute ahead: fine
    with pytest.raises(StreamAuthError, match="longer than any value"):
        verify(KEY, value, CALL, "echo", now=NOW - CLOCK_SKEW - 1)


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (None, "no 'auth'"),
        ("", "no 'auth'"),
        ("v1.1800000300", "malformed"),
        ("v1.soon.waKBXKBFLCnq-Rzqi_FbiaxyBnXQxwYOtsN_7-cKFls", "malformed"),
        ("v1.1800000300.waKBXKBFLCnq-Rzqi_FbiaxyBnXQxwYOtsN_7-cKFl", "malformed"),  # one character short
        ("v1.1800000300.waKBXKBFLCnq-Rzqi_FbiaxyBnXQxwYOtsN_7-cKFls=", "malformed"),
        ("v2.1800000300.waKBXKBFLCnq-Rzqi_FbiaxyBnXQxwYOtsN_7-cKFls", "version v2, not v1"),
        ("x" * 1000, "malformed"),
    ],
)
def test_a_missing_or_malformed_value_is_refused_with_one_line(value, why):
    with pytest.raises(StreamAuthError, match=why) as refused:
        verify(KEY, value, CALL, "echo", now=NOW)
    assert "\n" not in str(refused.value)


def test_minting_needs_a_key_and_a_sane_lifetime():
    with pytest.raises(ValueError, match="secret key"):
        mint("", CALL, "echo")
    for ttl in (0, -5, MAX_TTL + 1):
        with pytest.raises(ValueError, match="ttl"):
            mint(KEY, CALL, "echo", ttl=ttl)
