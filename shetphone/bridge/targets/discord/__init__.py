"""The ``discord:CHANNEL_ID`` target: a call heard in a Discord voice channel, and the channel heard on the phone.

- :mod:`.target`: one call (:class:`DiscordTarget`) and the text channel's notices;
- :mod:`.hub`: the voice channels the bots are in for calls, one link each;
- :mod:`.bots`: the bots (``DISCORD_BOT_TOKENS``) and which of them takes a call;
- :mod:`.send`: phone to Discord, the AudioSource discord.py's player reads;
- :mod:`.receive`: Discord to the phone, datagrams to each speaker's frames (transport, DAVE, Opus);
- :mod:`.voices`: what one call hears, every other voice of its channel mixed;
- :mod:`.voice`: the discord.py VoiceClient that receives, and the internals it relies on.
"""

from .hub import ChannelLink, DiscordHub
from .send import ChannelSource
from .target import DiscordTarget, call_busy_text, call_ended_text, call_started_text

__all__ = [
    "ChannelLink",
    "ChannelSource",
    "DiscordHub",
    "DiscordTarget",
    "call_busy_text",
    "call_ended_text",
    "call_started_text",
]
