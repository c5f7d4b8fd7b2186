"""The webhook app's own request: Twilio's url-encoded forms read as werkzeug reads them, only faster."""

from __future__ import annotations

import io
from urllib.parse import parse_qsl, urlencode

import pytest
from hypothesis import given
from hypothesis import strategies as st
from werkzeug.test import EnvironBuilder
from werkzeug.wrappers import Request

from shetphone.web.webhooks import WebhookRequest, url_encoded_fields

BODIES = [
    "",
    "CallSid=CA123&From=%2B447700900123&To=%2B441595000100",
    "Caller=Alice+Smith&CallerName=J%C3%BCrgen",
    "Digits=&Empty&&=only-a-value&a=b=c",
    "Repeated=1&Repeated=2&Repeated=1",
    "Bad=%ZZ&Half=%4&Latin=%E9t%E9",  # not escapes, and escapes that are not UTF-8
    "semi=a;b=c",  # ';' is not a separator
    "plus%2Bsign=1%2B1&space+name=x+y",
]


def werkzeug_fields(body: str) -> list[tuple[str, str]]:
    return parse_qsl(body, keep_blank_values=True, errors="werkzeug.url_quote")


@pytest.mark.parametrize("body", BODIES)
def test_fields_are_what_werkzeug_parses(body):
    assert url_encoded_fields(body) == werkzeug_fields(body)


@given(st.text(alphabet="ab=&%+;2BCF9é ", max_size=40))
def test_any_body_gives_what_werkzeug_gives(body):
    assert url_encoded_fields(body) == werkzeug_fields(body)


def environ_for(body: bytes, content_type: str = "application/x-www-form-urlencoded", **extra) -> dict:
    environ = EnvironBuilder(method="POST", path="/voice", data=body, content_type=content_type).get_environ()
    environ.update(extra)
    return environ


def both_forms(environ: dict):
    """The form as the webhook app reads it and as werkzeug alone does, from two copies of one request."""
    body = environ["wsgi.input"].read()
    ours = WebhookRequest({**environ, "wsgi.input": io.BytesIO(body)})
    theirs = Request({**environ, "wsgi.input": io.BytesIO(body)})
    return ours, theirs


@pytest.mark.parametrize("terminated", [False, True])  # gevent's server sets wsgi.input_terminated
def test_a_twilio_form_is_the_multidict_werkzeug_makes(terminated):
    fields = [("CallSid", "CA1"), ("From", "+447700900123"), ("StatusCallbackEvent", "ringing"),
              ("StatusCallbackEvent", "answered"), ("Digits", "")]
    ours, theirs = both_forms(environ_for(urlencode(fields).encode(), **{"wsgi.input_terminated": terminated}))
    assert list(ours.form.items(multi=True)) == list(theirs.form.items(multi=True)) == fields
    assert ours.form.getlist("StatusCallbackEvent") == ["ringing", "answered"]
    assert ours.get_data() == b""  # consumed, as werkzeug leaves it
    with pytest.raises(TypeError):
        ours.form["CallSid"] = "changed"  # immutable, as werkzeug's


def test_a_charset_in_the_content_type_still_takes_the_short_way():
    ours, theirs = both_forms(environ_for(b"a=1&b=%C3%A9", "application/x-www-form-urlencoded; charset=utf-8"))
    assert ours.form.to_dict() == theirs.form.to_dict() == {"a": "1", "b": "é"}


def test_a_body_that_is_not_utf8_is_kept_quoted_not_a_server_error():
    ours = WebhookRequest(environ_for(b"From=caf\xe9"))
    assert ours.form["From"] == "caf%E9"


def test_other_bodies_go_to_werkzeug():
    multipart = EnvironBuilder(method="POST", path="/voice", data={"CallSid": "CA1"}).get_environ()
    assert WebhookRequest(multipart).form.to_dict() == {"CallSid": "CA1"}
    chunked = environ_for(b"CallSid=CA2")
    del chunked["CONTENT_LENGTH"]
    chunked.update({"HTTP_TRANSFER_ENCODING": "chunked", "wsgi.input_terminated": True})
    assert WebhookRequest(chunked).form.to_dict() == {"CallSid": "CA2"}


def test_a_body_over_the_size_limit_is_refused_as_werkzeug_refuses_it():
    class Limited(WebhookRequest):
        max_content_length = 8

    from werkzeug.exceptions import RequestEntityTooLarge

    with pytest.raises(RequestEntityTooLarge):
        Limited(environ_for(b"CallSid=CA1234567890")).form  # noqa: B018
