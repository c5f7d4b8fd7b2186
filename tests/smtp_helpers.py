"""A real SMTP server for the tests: aiosmtpd on a loopback port, plain, STARTTLS or SMTPS, with AUTH.

It keeps what it received (the raw bytes, whether the session was encrypted,
who logged in), and can refuse the next messages or be stopped and started
again on the same port, to play an SMTP server that fails.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from urllib.parse import quote

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from conftest import free_port


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    content: bytes
    encrypted: bool
    login: str | None

    def message(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.content)

    def text(self) -> str:
        """The plain-text body, with the wire's CRLF line ends made LF."""
        return self.message().get_body(("plain",)).get_content().replace("\r\n", "\n")


@dataclass
class Inbox:
    """The aiosmtpd handler: accepts and keeps messages, or refuses the next ``refuse_next`` of them."""

    received: list[Received] = field(default_factory=list)
    refuse_next: int = 0
    refusal: str = "451 4.3.0 Mailbox busy, try again later"
    quit_reply: str = "221 Bye"

    async def handle_DATA(self, server, session, envelope) -> str:
        if self.refuse_next > 0:
            self.refuse_next -= 1
            return self.refusal
        encrypted = session.ssl is not None or server.transport.get_extra_info("ssl_object") is not None
        login = session.auth_data.login.decode() if isinstance(session.auth_data, LoginPassword) else None
        self.received.append(Received(envelope.mail_from, list(envelope.rcpt_tos),
                                      envelope.original_content or envelope.content, encrypted, login))
        return "250 2.0.0 OK"

    async def handle_QUIT(self, server, session, envelope) -> str:
        return self.quit_reply


class SmtpServer:
    """``mode``: "plain" (no TLS), "starttls" (offered; required when ``require_tls``), "smtps" (implicit TLS).
    ``users``: name -> password; when given, AUTH is required."""

    def __init__(self, *, mode: str = "plain", certificate: tuple[Path, Path] | None = None,
                 users: dict[str, str] | None = None, require_tls: bool = False, auth_over_plain: bool = False):
        self.mode = mode
        self.certificate = certificate
        self.users = users
        self.require_tls = require_tls
        self.auth_over_plain = auth_over_plain
        self.inbox = Inbox()
        self.port = free_port()
        self.controller: Controller | None = None

    def _server_context(self) -> ssl.SSLContext:
        assert self.certificate is not None, "TLS needs a certificate"
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(*map(str, self.certificate))
        return context

    def client_context(self) -> ssl.SSLContext:
        """What a client must trust to talk to this server: its self-signed certificate."""
        assert self.certificate is not None
        return ssl.create_default_context(cafile=str(self.certificate[0]))

    def _authenticate(self, server, session, envelope, mechanism, auth_data) -> AuthResult:
        ok = (isinstance(auth_data, LoginPassword) and self.users is not None
              and self.users.get(auth_data.login.decode()) == auth_data.password.decode())
        # handled=False: aiosmtpd itself answers 535 (with handled=True it leaves the client waiting).
        return AuthResult(success=ok, handled=False, auth_data=auth_data if ok else None)

    def start(self) -> SmtpServer:
        options: dict = {"hostname": "127.0.0.1", "port": self.port, "server_hostname": "smtp.test"}
        if self.mode == "starttls":
            options.update(tls_context=self._server_context(), require_starttls=self.require_tls)
        elif self.mode == "smtps":
            options["ssl_context"] = self._server_context()
        if self.users is not None:
            options.update(authenticator=self._authenticate, auth_required=True,
                           auth_require_tls=not self.auth_over_plain)
        self.controller = Controller(self.inbox, **options)
        self.controller.start()
        return self

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def url(self, user: str | None = None, password: str | None = None) -> str:
        scheme = "smtps" if self.mode == "smtps" else "smtp"
        credentials = f"{quote(user, safe='')}:{quote(password or '', safe='')}@" if user else ""
        return f"{scheme}://{credentials}127.0.0.1:{self.port}"
