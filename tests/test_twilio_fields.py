"""The checks of Twilio's webhook fields (shetphone.twilio_fields); the routes' use of them is in test_voice.py."""

from shetphone import twilio_fields

CHECKS = {"CallSid": twilio_fields.call_sid, "From": twilio_fields.address, "RecordingUrl": twilio_fields.url}
REAL = {"CallSid": "CA" + "0123456789abcdef" * 2, "From": "client:" + "a" * 121,
        "RecordingUrl": "https://api.twilio.com/2010-04-01/Accounts/AC" + "0" * 32 + "/Recordings/RE" + "1" * 32}


def test_real_values_and_absent_fields_pass():
    assert twilio_fields.problem(REAL, CHECKS) is None
    assert twilio_fields.problem({"CallSid": "", "To": "\x00"}, CHECKS) is None  # To is not checked here


def test_the_first_wrong_field_is_named_with_its_value_escaped_and_cut_short():
    wrong = twilio_fields.problem({**REAL, "From": "+44\x00" + "9" * 300, "RecordingUrl": "x" * 2000}, CHECKS)
    assert wrong == "From '+44\\x00" + "9" * 36 + "'... has a NUL byte"
    assert twilio_fields.problem({**REAL, "RecordingUrl": "x" * 1025}, CHECKS) == (
        "RecordingUrl '" + "x" * 40 + "'... is 1025 characters long, longer than any URL (1024)")
    assert twilio_fields.problem({"CallSid": REAL["CallSid"] + "\n"}, CHECKS) == (
        "CallSid 'CA0123456789abcdef0123456789abcdef\\n' is not a CallSid (two letters and 32 hex digits)")


def test_a_transcript_loses_its_nul_bytes_only():
    assert twilio_fields.without_nul("Call\x00 me\n back.") == "Call me\n back."
