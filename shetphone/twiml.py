"""Pure TwiML builders, on the twilio library's VoiceResponse.

Each returns the XML document as a string; URLs are absolute, built by the caller
from ``public_url`` so they are right behind a proxy or under a path prefix.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import lru_cache

from twilio.twiml.voice_response import VoiceResponse

STATUS_EVENTS = "initiated ringing answered completed"

# Twilio's connection overrides, appended to the callbacks the app may answer 503 (its
# database busy): by default Twilio retries a webhook once, on a failed connection only,
# never on a 5xx. Three retries on a failed connection, a read timeout or a 5xx; the
# handlers are idempotent, so a retry of a callback that did land changes nothing.
# https://www.twilio.com/docs/usage/webhooks/webhooks-connection-overrides
RETRIES = "rc=3&rp=ct,rt,5xx"


def with_retries(url: str) -> str:
    """``url`` with :data:`RETRIES` as its fragment (the fragment is never sent: Twilio reads it)."""
    return f"{url}#{RETRIES}"
CONFERENCE_EVENTS = "start end join leave hold"
VOICEMAIL_MAX_SECONDS = 120


def outbound_dial(destination: str, caller_id: str, status_url: str, action_url: str | None = None) -> str:
    """A browser's call to a phone number, ringing back only once the far end answers.

    ``action_url`` (/voice/dial-complete) lets the browser's leg follow its child into a
    conference when call control moves the call (SPEC §6).
    """
    response = VoiceResponse()
    options = {"action": action_url} if action_url else {}
    dial = response.dial(caller_id=caller_id, answer_on_bridge=True, **options)
    dial.number(destination, status_callback=status_url, status_callback_event=STATUS_EVENTS)
    return str(response)


@lru_cache(maxsize=256)  # the same few documents on every incoming call: build each once
def ring_group(clients: tuple[str, ...], timeout: int, action_url: str, status_url: str) -> str:
    """An incoming call ringing every client at once; the first to answer takes it."""
    response = VoiceResponse()
    dial = response.dial(timeout=timeout, action=action_url, answer_on_bridge=True)
    for client in clients:
        dial.client(client, status_callback=status_url, status_callback_event=STATUS_EVENTS)
    return str(response)



def ring_legs(
    clients: tuple[str, ...],
    numbers: tuple[str, ...],
    caller_id: str,
    timeout: int,
    action_url: str,
    status_url: str,
) -> str:
    """An incoming call ringing browsers and phones (outside phones, forward numbers) at once.

    ``caller_id`` is what the phones see (ringing.leg_caller_id: the caller's
    number where Twilio allows it, else the team number); the browsers see it too.
    """
    if not clients and not numbers:
        raise ValueError("nobody to ring: the call goes to voicemail instead")
    response = VoiceResponse()
    dial = response.dial(timeout=timeout, action=action_url, answer_on_bridge=True, caller_id=caller_id)
    for client in clients:
        dial.client(client, status_callback=status_url, status_callback_event=STATUS_EVENTS)
    for number in numbers:
        dial.number(number, status_callback=status_url, status_callback_event=STATUS_EVENTS)
    return str(response)

def media_stream(stream_url: str, parameters: Mapping[str, str]) -> str:
    """A bidirectional Media Stream to the bridge; ``parameters`` reach it in ``start``."""
    response = VoiceResponse()
    stream = response.connect().stream(url=stream_url)
    for name, value in parameters.items():
        stream.parameter(name=name, value=value)
    return str(response)


def refusal(reason: str) -> str:
    """Say why, then hang up; never a <Dial>."""
    response = VoiceResponse()
    response.say(reason)
    response.hangup()
    return str(response)


def voicemail(greeting: str, greeting_url: str | None, recording_url: str, action_url: str,
              transcribe_url: str | None = None) -> str:
    """The greeting (spoken, or an audio file), a beep and a recording of at most two minutes.

    ``action_url`` is where Twilio goes once the recording ends; without it Twilio would
    fetch the current document's URL again (the <Dial>'s action) and start over.
    ``transcribe_url``: Twilio transcribes the recording (two minutes at most, as this one is)
    and posts the text there.
    """
    transcription = {"transcribe": True, "transcribe_callback": transcribe_url} if transcribe_url else {}
    response = VoiceResponse()
    if greeting_url:
        response.play(greeting_url)
    else:
        response.say(greeting)
    response.record(
        action=action_url,
        max_length=VOICEMAIL_MAX_SECONDS,
        play_beep=True,
        recording_status_callback=recording_url,
        recording_status_callback_event="completed",
        **transcription,
    )
    response.hangup()
    return str(response)


def hangup() -> str:
    response = VoiceResponse()
    response.hangup()
    return str(response)


def conference(name: str, status_url: str, label: str, end_on_exit: bool) -> str:
    """A leg joining the call's conference (SPEC §6); the outside party's leaving ends it."""
    response = VoiceResponse()
    response.dial().conference(
        name,
        beep=False,
        start_conference_on_enter=True,
        end_conference_on_exit=end_on_exit,
        status_callback=status_url,
        status_callback_event=CONFERENCE_EVENTS,
        participant_label=label,
    )
    return str(response)
