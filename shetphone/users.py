"""The ``.htpasswd`` user store, verified and written through libpass's HtpasswdFile.

Only bcrypt, apr1-md5 and SHA1 entries are accepted: a plaintext (or DES crypt)
line is a configuration error naming its line, never a silent way in. A file with
no users at all is malformed too: a half-written or emptied file must not log the
whole team out.
"""

from __future__ import annotations

import os
import re
import secrets
import tempfile
from pathlib import Path

from passlib.apache import HtpasswdFile
from passlib.hash import bcrypt

from .settings import CLIENT_NAME, ConfigError, read_utf8

ACCEPTED = (
    (re.compile(r"^\$2[aby]\$\d\d\$[./A-Za-z0-9]{53}$"), "bcrypt"),
    (re.compile(r"^\$apr1\$[./A-Za-z0-9]{1,8}\$[./A-Za-z0-9]{22}$"), "apr1-md5"),
    (re.compile(r"^\{SHA\}[A-Za-z0-9+/]{27}=$"), "SHA1"),
)
# bcrypt reads at most 72 bytes (bcrypt 5 raises beyond), and no scheme here takes a NUL:
# such a password never matches any entry, whatever its scheme.
MAX_PASSWORD_BYTES = 72
_dummy_hash: str | None = None


def checkable(password: str) -> bool:
    """Whether ``password`` can be checked against an entry at all (at most 72 bytes, no NUL)."""
    return "\0" not in password and len(password.encode("utf-8", "surrogatepass")) <= MAX_PASSWORD_BYTES


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

    def passwords_changed_since(self, old: Users) -> list[str]:
        """The users of ``old`` still here whose entry differs: a new password, which ends their logins."""
        return [name for name in self.names() if name in old and old._entries[name] != self._entries[name]]

    def verify(self, name: str, password: str) -> bool:
        """True when ``password`` is ``name``'s; never raises, whatever the password (slow: bcrypt)."""
        if not checkable(password):
            return False  # refused for every name alike, so this tells nobody which names exist
        try:
            if name not in self._entries:
                _waste_time_like_a_check(password)
                return False
            return bool(self._file.check_password(name, password))
        except ValueError:  # passlib's PasswordValueError, size and encoding errors: a wrong password, not a 500
            return False


def parse_htpasswd(text: str, path: Path) -> Users:
    """The users of a file the server runs on: one user at least, or :class:`ConfigError`."""
    users = _parse_entries(text, path)
    if not users.names():
        raise ConfigError(path, "", "has no users; add one with `flask --app app users add NAME`")
    return users


def _parse_entries(text: str, path: Path) -> Users:
    entries: dict[str, str] = {}
    # A byte-order mark (Notepad's UTF-8) would otherwise be part of the first name.
    for number, raw in enumerate(text.removeprefix("\ufeff").splitlines(), start=1):
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


def _read(path: Path) -> str:
    """The file's text ("" when there is none yet), or :class:`ConfigError` saying why it cannot be read."""
    try:
        return read_utf8(path)
    except FileNotFoundError:
        return ""


def load_users(path: Path) -> Users:
    """Read the user file strictly, for the admin commands (which may start from no file or no users)."""
    return _parse_entries(_read(path), path)


def _write_atomically(path: Path, data: bytes) -> None:
    # A reader (the running server's watcher) must never see half a file.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o640
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
            os.chmod(tmp, mode)
            os.replace(tmp, path)
        except BaseException:
            os.unlink(tmp)
            raise
    except OSError as exc:  # no such directory, no permission, a full disk: one line, the file untouched
        raise ConfigError(path, "", f"cannot be written in {path.parent}: {exc.strerror}") from None


def set_password(path: Path, name: str, password: str) -> bool:
    """Add or update ``name`` with a bcrypt hash; True when the user is new."""
    if not CLIENT_NAME.match(name):
        raise ValueError(f"{name!r} is not a valid user name (letters, digits, _ . @ -)")
    if not checkable(password):
        raise ValueError(f"the password must be at most {MAX_PASSWORD_BYTES} bytes, without NUL characters")
    text = _read(path)
    _parse_entries(text, path)  # refuse to rewrite a file that is already broken
    file = HtpasswdFile.from_string(text.encode(), default_scheme="bcrypt")
    is_new = name not in file.users()
    file.set_password(name, password)
    _write_atomically(path, file.to_string())
    return is_new


def remove_user(path: Path, name: str) -> bool:
    """Remove ``name``; False when there was no such user. ValueError when ``name`` is the last one."""
    text = _read(path)
    users = _parse_entries(text, path)
    if name not in users:
        return False
    if users.names() == [name]:
        # A file with no users is malformed: the server would keep the old one and say so.
        raise ValueError(f"{name} is the last user in {path}; add another one first")
    file = HtpasswdFile.from_string(text.encode())
    if not file.delete(name):
        return False
    _write_atomically(path, file.to_string())
    return True
