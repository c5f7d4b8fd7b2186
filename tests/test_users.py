"""The .htpasswd store: accepted schemes, refused plaintext, writes through HtpasswdFile."""

import logging
import os

import pytest
from passlib.hash import apr_md5_crypt, bcrypt, ldap_sha1

from shetphone.settings import ConfigError
from shetphone.users import load_users, parse_htpasswd, remove_user, set_password
from shetphone.watched import WatchedFile


def test_bcrypt_apr1_and_sha1_entries_verify(tmp_path):
    text = (
        f"alice:{bcrypt.using(rounds=4, ident='2y').hash('a-pass')}\n"
        f"bob:{apr_md5_crypt.hash('b-pass')}\n"
        f"carol:{ldap_sha1.hash('c-pass')}\n"
    )
    users = parse_htpasswd(text, tmp_path / ".htpasswd")
    assert users.names() == ["alice", "bob", "carol"]
    assert users.verify("alice", "a-pass") and users.verify("bob", "b-pass") and users.verify("carol", "c-pass")
    assert not users.verify("alice", "b-pass")
    assert not users.verify("nobody", "a-pass")


@pytest.mark.parametrize(
    ("line", "what"),
    [
        ("alice:secret", "plaintext is refused"),
        ("alice:rqXexS6ZhobKA", "plaintext is refused"),  # DES crypt: as good as plaintext
        ("just-a-name", "is not NAME:HASH"),
        ("al ice:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=", "not a valid user name"),
    ],
)
def test_bad_lines_name_their_line(tmp_path, line, what):
    path = tmp_path / ".htpasswd"
    good = f"bob:{apr_md5_crypt.hash('b-pass')}\n"
    with pytest.raises(ConfigError) as caught:
        parse_htpasswd(good + "\n" + line + "\n", path)
    assert str(caught.value).startswith(f"{path}:3: ")
    assert what in str(caught.value)


def test_duplicate_user_is_refused(tmp_path):
    entry = f"bob:{apr_md5_crypt.hash('b-pass')}\n"
    with pytest.raises(ConfigError, match=r":2: bob: appears twice"):
        parse_htpasswd(entry + entry, tmp_path / ".htpasswd")


def test_set_password_writes_bcrypt_and_keeps_others(tmp_path):
    path = tmp_path / ".htpasswd"
    assert set_password(path, "alice", "first password") is True
    assert set_password(path, "bob", "bobs password") is True
    assert set_password(path, "alice", "second password") is False
    text = path.read_text()
    assert text.count("\n") == 2
    assert "alice:$2y$" in text or "alice:$2b$" in text
    users = load_users(path)
    assert users.verify("alice", "second password")
    assert not users.verify("alice", "first password")
    assert users.verify("bob", "bobs password")


def test_the_users_whose_password_changed_are_named(tmp_path):
    path = tmp_path / ".htpasswd"
    for name in ("alice", "bob", "carol"):
        set_password(path, name, f"{name}'s first password")
    before = load_users(path)
    set_password(path, "bob", "bob's second password")
    remove_user(path, "carol")
    set_password(path, "dave", "dave's password")
    after = load_users(path)
    assert after.passwords_changed_since(before) == ["bob"]  # carol removed, dave added: not changed
    assert after.passwords_changed_since(after) == []


def test_set_password_refuses_to_rewrite_a_broken_file(tmp_path):
    path = tmp_path / ".htpasswd"
    path.write_text("alice:plaintext\n")
    with pytest.raises(ConfigError):
        set_password(path, "bob", "a password")
    assert path.read_text() == "alice:plaintext\n"


def test_remove_user(tmp_path):
    path = tmp_path / ".htpasswd"
    set_password(path, "alice", "a password")
    set_password(path, "bob", "b password")
    assert remove_user(path, "alice") is True
    assert remove_user(path, "alice") is False
    assert load_users(path).names() == ["bob"]


@pytest.mark.parametrize("text", ["", "\n", "# the team\n\n"])
def test_a_file_with_no_users_is_malformed(tmp_path, text):
    path = tmp_path / ".htpasswd"
    with pytest.raises(ConfigError) as caught:
        parse_htpasswd(text, path)
    assert str(caught.value) == f"{path}: has no users; add one with `flask --app app users add NAME`"


def test_an_emptied_file_keeps_the_last_good_users_and_says_so(tmp_path, caplog):
    path = tmp_path / ".htpasswd"
    path.write_text(f"alice:{apr_md5_crypt.hash('a-pass')}\n")
    watched = WatchedFile(path, parse_htpasswd, interval=0)
    path.write_text("")  # `htpasswd` truncates before it writes; or someone emptied it
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 2_000_000_000))
    with caplog.at_level(logging.ERROR):
        watched.refresh()
        watched.refresh()
    assert watched.current.names() == ["alice"]
    assert f"{path}: has no users; add one with `flask --app app users add NAME`; keeping the last good version" \
        in caplog.text


def test_the_admin_commands_start_from_no_file(tmp_path):
    path = tmp_path / ".htpasswd"
    assert load_users(path).names() == []  # `users list` on a fresh machine: nobody, no error
    assert set_password(path, "admin", "a first password") is True  # what `make run`'s bootstrap does
    assert parse_htpasswd(path.read_text(), path).names() == ["admin"]


def test_the_last_user_cannot_be_removed(tmp_path):
    path = tmp_path / ".htpasswd"
    set_password(path, "alice", "a password")
    set_password(path, "bob", "b password")
    assert remove_user(path, "bob") is True
    before = path.read_text()
    with pytest.raises(ValueError, match=r"alice is the last user in .*; add another one first"):
        remove_user(path, "alice")
    assert path.read_text() == before
    assert remove_user(path, "nobody") is False


LONG = "x" * 73  # one byte more than bcrypt reads


@pytest.mark.parametrize(
    "password",
    [LONG, "é" * 37, "p" * 1000, "with a \0 NUL"],  # é is two bytes in UTF-8: 74 bytes
)
def test_any_password_is_checked_without_error_for_every_scheme(tmp_path, password):
    text = (
        f"alice:{bcrypt.using(rounds=4, ident='2y').hash('a-pass')}\n"
        f"bob:{apr_md5_crypt.hash('b-pass')}\n"
        f"carol:{ldap_sha1.hash('c-pass')}\n"
    )
    users = parse_htpasswd(text, tmp_path / ".htpasswd")
    for name in ("alice", "bob", "carol", "nobody"):  # nobody: the dummy check for unknown names
        assert users.verify(name, password) is False


def test_a_password_over_72_bytes_never_matches_even_where_its_scheme_could_read_it(tmp_path):
    users = parse_htpasswd(f"bob:{apr_md5_crypt.hash(LONG)}\n", tmp_path / ".htpasswd")
    assert users.verify("bob", LONG) is False  # one rule for every scheme: over 72 bytes is refused
    assert users.verify("bob", "x" * 72) is False


def test_a_password_of_72_bytes_still_works(tmp_path):
    path = tmp_path / ".htpasswd"
    set_password(path, "alice", "é" * 36)  # 72 bytes
    assert load_users(path).verify("alice", "é" * 36)


def test_set_password_refuses_what_could_never_be_checked(tmp_path):
    path = tmp_path / ".htpasswd"
    with pytest.raises(ValueError, match="at most 72 bytes"):
        set_password(path, "alice", LONG)
    assert not path.exists()


def test_a_byte_order_mark_is_not_part_of_the_first_name(tmp_path):
    # Notepad saves UTF-8 with a BOM: alice is still alice, to the server and to `users add`.
    path = tmp_path / ".htpasswd"
    path.write_text(f"\ufeffalice:{apr_md5_crypt.hash('a-pass')}\nbob:{apr_md5_crypt.hash('b-pass')}\n")
    assert parse_htpasswd(path.read_text(), path).names() == ["alice", "bob"]
    assert set_password(path, "alice", "a new password") is False
    assert remove_user(path, "bob") is True
    assert path.read_text().count("alice:") == 1
    assert load_users(path).verify("alice", "a new password")


def _a_directory(path):
    path.mkdir()


def _latin_1(path):
    path.write_bytes(f"alice:{apr_md5_crypt.hash('a-pass')}\nj\xf6rg:{apr_md5_crypt.hash('j-pass')}\n".encode("latin-1"))


@pytest.mark.parametrize(("make", "after_path"), [
    (_a_directory, ": cannot be read: Is a directory"),
    (_latin_1, ":2: byte 0xf6 is not UTF-8; save the file as UTF-8"),
], ids=["directory", "latin-1"])
@pytest.mark.parametrize("command", [load_users, lambda path: set_password(path, "bob", "b password"),
                                     lambda path: remove_user(path, "alice")], ids=["list", "add", "remove"])
def test_a_file_that_cannot_be_read_is_one_line_for_the_admin_commands(tmp_path, make, after_path, command):
    path = tmp_path / ".htpasswd"
    make(path)
    with pytest.raises(ConfigError) as caught:
        command(path)
    assert str(caught.value) == f"{path}{after_path}"


def test_a_file_in_a_missing_directory_is_one_line(tmp_path):
    path = tmp_path / "no such directory" / ".htpasswd"
    with pytest.raises(ConfigError) as caught:
        set_password(path, "admin", "a first password")
    assert str(caught.value) == f"{path}: cannot be written in {path.parent}: No such file or directory"
