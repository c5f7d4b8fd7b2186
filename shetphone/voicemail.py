"""Voicemail recordings: who may hear one, and where Twilio keeps its audio.

The browser never sees a Twilio URL or credential: it asks our route, which
fetches from Twilio's REST API (``twilio_api_base``) with the account's credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .store import Recording

RECORDING_SID = re.compile(r"^RE[0-9a-fA-F]{32}$")
AUDIO_FORMATS = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def is_recording_sid(text: str) -> bool:
    return bool(RECORDING_SID.match(text))


def may_hear(recording: Recording, numbers: Iterable[str], user: str) -> bool:
    """A recording belongs to the people of its call's number (or the client who placed the call)."""
    return recording.number in set(numbers) or recording.client == user


def media_url(api_base: str, account_sid: str, recording_sid: str, audio_format: str = "mp3") -> str:
    """Twilio's address of the recording's audio, built from its SID, never taken from a request."""
    return f"{api_base}/2010-04-01/Accounts/{account_sid}/Recordings/{recording_sid}.{audio_format}"
