"""The .htpasswd store: accepted schemes, refused plaintext, writes through HtpasswdFile."""

import pytest
from passlib.hash import apr_md5_crypt, bcrypt, ldap_sha1

from shetphone.settings import ConfigError
from shetphone.users import load_users, parse_htpasswd, remove_user, set_password


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
