"""The tables, as the newest revision in ``migrations/`` leaves them.

A change here is a change of the schema: it needs a revision too (see
``migrate.py``); a test compares the two.

- ``calls``: one row per *root* call, keyed by the CallSid of the request Twilio
  first sent to ``/voice``. It carries the call as the team sees it (direction,
  the team's Twilio number, from, to, the browser client that placed it) and a
  summary of its legs kept up to date on every write, so listing reads one table.
- ``legs``: one row per CallSid that sent a status callback (the root itself and
  its ``<Dial>`` children), with the last applied SequenceNumber and status rank.
- ``recordings``: voicemail left on a call (Twilio's URL stays here; browsers
  only ever get our own URL), with its transcript when Twilio made one.
- ``call_controls``: the call-control state of a root call put under control
  (hold, transfer, three-way: ``control.CallControl`` as JSON), with its claim:
  the token of the one request or callback whose Twilio steps are running;
  ``control_parties`` finds the call from any of its parties' CallSids, and
  ``control_inbox`` keeps the callbacks that came while the claim was held.
- ``logins``: one row per live login (a browser's session), keyed by the SHA-256 of
  its secret id: the cookie holds the id, the database only its hash, so a copy
  of the database opens no session. Logout, ``users remove`` and disuse delete it.
- ``dnd``: the users whose do-not-disturb is on (SPEC §7), across logins and restarts.
- ``outbox``: voicemail e-mail, one row per recording and address (SPEC §8), with
  the voicemail's facts as the mail tells them; times in unix seconds.
- ``schema_version``: the hand-written version of the code before Alembic. It
  stays, at 2, so that code refuses a database this one has upgraded.

Timestamps are naive UTC.
"""

from __future__ import annotations

import sqlalchemy as sa

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),  # always 1: one row
    sa.Column("version", sa.Integer, nullable=False),
)

calls = sa.Table(
    "calls",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("direction", sa.String(8), nullable=False),  # inbound / outbound, seen from the team
    sa.Column("number", sa.String(64), nullable=False),  # the team's Twilio number
    sa.Column("from_number", sa.String(255), nullable=False),
    sa.Column("to_number", sa.String(255), nullable=False),
    sa.Column("client", sa.String(128)),  # the browser client that placed an outbound call
    sa.Column("started_at", sa.DateTime, nullable=False),
    sa.Column("dial_status", sa.String(16)),  # DialCallStatus from the <Dial action>
    # The summary of the legs, rewritten with every change so listing reads only this row.
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("answered", sa.Boolean, nullable=False, default=False),
    sa.Column("duration", sa.Integer, nullable=False, default=0),
    sa.Index("calls_by_number", "number", "started_at", "call_sid"),
    sa.Index("calls_by_client", "client", "started_at", "call_sid"),
    sa.Index("calls_by_start", "started_at"),  # pruning
)

legs = sa.Table(
    "legs",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False),
    sa.Column("parent_call_sid", sa.String(64)),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("status_rank", sa.Integer, nullable=False),
    sa.Column("sequence", sa.Integer),  # the last applied SequenceNumber, if Twilio sent one
    sa.Column("answered", sa.Boolean, nullable=False, default=False),
    sa.Column("duration", sa.Integer, nullable=False, default=0),
    sa.Column("from_number", sa.String(255)),  # the leg's own From/To, as Twilio sent them
    sa.Column("to_number", sa.String(255)),
    sa.Column("event_at", sa.DateTime, nullable=False),  # Timestamp of the last applied callback
    sa.Index("legs_by_root", "root_call_sid"),
    sa.Index("legs_by_rank", "status_rank"),  # the few legs not yet terminal, for catch-up
    sa.Index("legs_by_callee", "to_number", "status_rank"),  # who is on a call (presence), per incoming call
)

recordings = sa.Table(
    "recordings",
    metadata,
    sa.Column("recording_sid", sa.String(64), primary_key=True),
    sa.Column("call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"), nullable=False),
    sa.Column("twilio_url", sa.String(1024), nullable=False),
    sa.Column("duration", sa.Integer, nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("transcript", sa.Text),  # Twilio's transcript (voicemail_transcribe), when one came
    sa.Index("recordings_by_call", "call_sid"),
)

call_controls = sa.Table(
    "call_controls",
    metadata,
    sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("calls.call_sid", ondelete="CASCADE"),
              primary_key=True),
    sa.Column("number", sa.String(64), nullable=False),  # the call's team number: its room
    sa.Column("state", sa.Text, nullable=False),  # control.CallControl.to_dict(), as JSON
    sa.Column("version", sa.Integer, nullable=False),  # one more at every write
    sa.Column("claim", sa.String(64)),  # who is running Twilio steps for the call; NULL: nobody
    sa.Column("claimed_at", sa.DateTime),  # a claim this old is a holder that died
    sa.Column("updated_at", sa.DateTime, nullable=False),
)

control_parties = sa.Table(
    "control_parties",
    metadata,
    sa.Column("call_sid", sa.String(64), primary_key=True),
    sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("call_controls.root_call_sid", ondelete="CASCADE"),
              nullable=False),
    sa.Index("control_parties_by_root", "root_call_sid"),
)

control_inbox = sa.Table(
    "control_inbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("root_call_sid", sa.String(64), sa.ForeignKey("call_controls.root_call_sid", ondelete="CASCADE"),
              nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # conference, status, dial
    sa.Column("payload", sa.Text, nullable=False),  # the callback's fields, as JSON
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Index("control_inbox_by_root", "root_call_sid", "id"),
)

logins = sa.Table(
    "logins",
    metadata,
    sa.Column("id_hash", sa.String(64), primary_key=True),  # hex SHA-256 of the id in the session cookie
    sa.Column("user_name", sa.String(128), nullable=False),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("last_seen_at", sa.DateTime, nullable=False),  # refreshed at most once a minute
    sa.Column("user_agent", sa.String(255)),  # what the browser said it was, to recognise a login
    sa.Index("logins_by_user", "user_name"),
    sa.Index("logins_by_last_seen", "last_seen_at"),  # pruning
)

dnd = sa.Table(
    "dnd",
    metadata,
    sa.Column("user_name", sa.String(128), primary_key=True),
    sa.Column("since", sa.DateTime, nullable=False),
)

outbox = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("recording_sid", sa.String(64), nullable=False),
    sa.Column("address", sa.String(320), nullable=False),
    sa.Column("address_key", sa.String(320), nullable=False),  # lower-cased: one row per address, whatever its case
    sa.Column("caller", sa.String(255), nullable=False),
    sa.Column("number", sa.String(64), nullable=False),
    sa.Column("duration", sa.Integer, nullable=False),
    sa.Column("received_at", sa.DateTime, nullable=False),
    sa.Column("transcript", sa.Text),
    sa.Column("created_at", sa.Double, nullable=False),  # the hour of retries counts from here
    sa.Column("due_at", sa.Double, nullable=False),
    sa.Column("lease_until", sa.Double, nullable=False),  # claimed by a sender until then
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),  # queued, sent, given up
    sa.Column("error", sa.Text),
    sa.UniqueConstraint("recording_sid", "address_key", name="outbox_once_per_address"),
    sa.Index("outbox_due", "status", "due_at"),
)
