"""The ``.htpasswd`` user store, verified and written through libpass's HtpasswdFile.

Only bcrypt, apr1-md5 and SHA1 entries are accepted: a plaintext (or DES crypt)
line is a configuration error naming its line, never a silent way in.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from passlib.apache import HtpasswdFile
from passlib.hash import bcrypt

from .settings import CLIENT_NAME, ConfigError

ACCEPTED = (
    (re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$"), "bcrypt"),
    (re.compile(r"^\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}$"), "apr1-md5"),
    (re.compile(r"^\{SHA\}[A-Za-z0-9+/]{27}=$"), "SHA1"),
)
_dummy_hash: str | None = None


def _waste_time_like_a_check(password: str) -> None:
    """Verify against a throwaway bcrypt hash, so timing does not tell which user names exist."""
    global _dummy_hash
    if _dummy_hash is None:
        _dummy_hash = bcrypt.hash(secrets.token_hex(16))
    bcrypt.verify(password, _dummy_hash)


class Users:
    """An immutable snapshot of the user file."""

    def __init__(self, entries: dict[str, str]):
        self._entries = entries
        self._file = HtpasswdFile.from_string(
            "".join(f"{name}:{hashed}\n" for name, hashed in entries.items()).encode()
        )

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def names(self) -> list[str]:
        return sorted(self._entries)

    def verify(self, name: str, password: str) -> bool:
        if name not in self._entries:
            _waste_time_like_a_check(password)
            return False
        return bool(self._file.check_password(name, password))


def parse_htpasswd(text: str, path: Path) -> Users:
    entries: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, sep, hashed = line.partition(":")
        if not sep:
            raise ConfigError(path, "entry", "is not NAME:HASH", number)
        if not CLIENT_NAME.match(name):
            raise ConfigError(path, name, "is not a valid user name (letters, digits, _ . @ -)", number)
        if name in entries:
            raise ConfigError(path, name, "appears twice", number)
        if not any(pattern.match(hashed) for pattern, _ in ACCEPTED):
            raise ConfigError(
                path, name, "is not a bcrypt, apr1-md5 or SHA1 hash (plaintext is refused); "
                "set it with `flask --app app users add NAME`", number,
            )
        entries[name] = hashed
    return Users(entries)


def load_users(path: Path) -> Users:
    """Read the user file strictly (for the admin commands)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        text = ""
    return parse_htpasswd(text, path)


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (the running server's watcher) must never see half a file.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def set_password(path: Path, name: str, password: str) -> bool:
    """Add or update ``name`` with a bcrypt hash; True when the user is new."""
    if not CLIENT_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid user name (letters, digits, _ . @ -)")
    load_users(path)  # refuse to rewrite a file that is already broken
    file = HtpasswdFile(str(path), default_scheme="bcrypt", new=not path.exists())
    is_new = name not in file.users()
    file.set_password(name, password)
    _write_atomically(path, file.to_string())
    return is_new


def remove_user(path: Path, name: str) -> bool:
    """Remove ``name``; False when there was no such user."""
    load_users(path)
    if not path.exists():
        return False
    file = HtpasswdFile(str(path))
    if not file.delete(name):
        return False
    _write_atomically(path, file.to_string())
    return True
