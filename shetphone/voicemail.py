"""Voicemail recordings: who may hear one, and in which formats.

The browser never sees a Twilio URL or credential: it asks our route, which
fetches from Twilio's REST API (``twilio_rest.recording_media``) with the account's credentials.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from .store import Recording

RECORDING_SID = re.compile(r"RE[0-9a-fA-F]{32}")  # whole: fullmatch, as $ would let a newline follow
AUDIO_FORMATS = {"mp3": "audio/mpeg", "wav": "audio/wav"}


def is_recording_sid(text: str) -> bool:
    return RECORDING_SID.fullmatch(text) is not None


def may_hear(recording: Recording, numbers: Iterable[str], user: str) -> bool:
    """A recording belongs to the people of its call's number (or the client who placed the call)."""
    return recording.number in set(numbers) or recording.client == user

