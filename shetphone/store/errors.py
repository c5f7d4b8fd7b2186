"""What the store raises: its own exceptions, so nobody outside ``store/`` handles SQLAlchemy's."""

from __future__ import annotations


class StoreError(Exception):
    """The store could not do what was asked. The message is one line, fit for a log or the console."""


class StoreUnavailable(StoreError):
    """The database did not answer in time or could not be reached: try again later (a webhook answers 503)."""


class StoreRefused(StoreError):
    """The database refused a value it was given (too long for its column, a NUL byte in text, a number out
    of range, a constraint): the same write fails every time, so it is never worth a retry (a webhook answers
    as if done, rather than 503)."""


class SchemaTooNew(StoreError):
    """The database was written by a newer Shetphone: refused rather than corrupted."""
