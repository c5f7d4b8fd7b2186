"""The media bridge: Twilio Media Streams <-> Discord voice (python -m shetphone.bridge)."""
