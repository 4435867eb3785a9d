"""One outbound SMTP session: connect, EHLO, STARTTLS, AUTH, then transactions.

Postfix counterpart: smtp(8) (`smtp_connect.c`, `smtp_proto.c`). A session is
opened once and may carry several transactions (see pool.py); `send()` writes
MAIL, every RCPT and DATA in one write when the server offers PIPELINING
(RFC 2920), and goes command by command otherwise.

This is a small client of its own on asyncio streams rather than aiosmtplib:
aiosmtplib's protocol discards a reply that arrives while no read is pending
and leaves a second reply of the same packet unparsed, so pipelined replies
are lost there.

Errors: OSError, ssl.SSLError, timeouts and malformed replies never leave
this module; they become `SessionFailed` (a TempFail) with an SMTP-style
code, so callers handle one kind of failure.

Security: reads replies from remote servers. A reply is bounded in line
length (StreamReader limit) and line count, plaintext sent after the reply to
STARTTLS is discarded rather than read as if it came over TLS, its text is stripped of control
characters before it reaches logs or DSNs, and addresses with control
characters are never written into a command. AUTH passwords are only ever
sent, never logged.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import re
import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from enum import StrEnum

from gateway.delivery.eight_bit import content_for
from gateway.delivery.tls_checks import peer_chain, tls_result, why_tls_failed
from gateway.errors import TempFail
from gateway.model import Reply, Secret

__all__ = [
    "Endpoint",
    "MailRequest",
    "PeerCheck",
    "SessionFailed",
    "SessionSettings",
    "SmtpConnection",
    "StaleConnection",
    "TlsFailed",
    "TlsMode",
    "TransactionReplies",
    "dot_stuff",
    "parse_reply",
]

log = logging.getLogger(__name__)

MAX_REPLY_LINES = 100  # an EHLO reply has ~10; more is a broken or hostile server
MAX_TEXT = 500  # characters of reply text kept for logs and DSNs
_LINE_LIMIT = 8192  # RFC 5321 4.5.3.1.5 says 512 per reply line; be lenient
_ENHANCED = re.compile(r"([245])\.(\d{1,3})\.(\d{1,3})(?:\s+|$)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TlsMode(StrEnum):
    NONE = "none"  # never STARTTLS
    OPPORTUNISTIC = "opportunistic"  # STARTTLS when offered, plaintext otherwise
    REQUIRED = "required"  # STARTTLS must be offered and succeed (4.7.5 otherwise)
    IMPLICIT = "implicit"  # TLS from the first byte (port 465)


# Called with the server's certificate chain (DER, leaf first) after the handshake;
# returns None when it is acceptable, else an RFC 8460 result type and a reason
# (DANE matching, dane.py).
PeerCheck = Callable[[list[bytes]], "tuple[str, str] | None"]


@dataclass(frozen=True)
class Endpoint:
    """Where to connect and how: one MX address or one smarthost.

    `authenticated`: the TLS context (or `check_peer`) proves who the server is (STS
    enforce, DANE, `verify`); REQUIRETLS messages go only over such sessions.
    `fallback_context`: MTA-STS testing mode; when the verifying handshake fails, the
    session is retried with this one (encrypt only) before plaintext, and the failure
    is kept in `SmtpConnection.tls_problem` for TLS reports.
    """

    name: str  # MX host / smarthost name: reported in Attempt.host, checked in the certificate
    address: str  # what to connect to (IP address, or a name for smarthosts)
    port: int
    tls: TlsMode = TlsMode.OPPORTUNISTIC
    tls_context: ssl.SSLContext | None = None  # required unless tls is NONE
    username: str | None = None
    password: Secret | None = None
    check_peer: PeerCheck | None = field(default=None, compare=False)
    authenticated: bool = False
    fallback_context: ssl.SSLContext | None = None

    @property
    def tls_name(self) -> str:
        """The name for SNI and certificate checks: an address literal loses its brackets."""
        if self.name.startswith("[") and self.name.endswith("]"):
            text = self.name[1:-1]
            return text[5:] if text.lower().startswith("ipv6:") else text
        return self.name

    def __str__(self) -> str:
        if self.name == self.address:
            return f"{self.name}:{self.port}"
        return f"{self.name}[{self.address}]:{self.port}"


@dataclass(frozen=True)
class SessionSettings:
    helo_name: str
    connect_timeout: float
    command_timeout: float  # greeting, EHLO, MAIL, RCPT, DATA, RSET (RFC 5321 4.5.3.2)
    data_timeout: float  # content plus the reply to the final "."


@dataclass(frozen=True)
class MailRequest:
    mail_from: str  # "" is the null sender
    recipients: tuple[str, ...]
    smtputf8: bool = False
    eight_bit: bool = False
    requiretls: bool = False  # RFC 8689: MAIL FROM carries REQUIRETLS


@dataclass(frozen=True)
class TransactionReplies:
    """The server's replies to one transaction; `rcpt` is in request order.

    `data` is the reply to DATA (None if DATA was not sent) and `final` the
    reply to the final "." (None if the content was not sent).
    """

    mail: Reply
    rcpt: tuple[Reply, ...]
    data: Reply | None = None
    final: Reply | None = None


class SessionFailed(TempFail):
    """The session broke or the server refused it; try the next host.

    `answered` is true when the failure is a reply from the server (a 421
    greeting, a refused EHLO or AUTH), false when nothing usable came back.
    """

    def __init__(self, code: int, enhanced: str, text: str, *, answered: bool = False) -> None:
        super().__init__(code, enhanced, text)
        self.answered = answered

    @property
    def reply(self) -> Reply:
        return Reply(self.code, self.enhanced, self.text)


class StaleConnection(SessionFailed):
    """A reused connection turned out dead before the transaction began."""


class TlsFailed(SessionFailed):
    """TLS could not be had: not offered, handshake failed, certificate refused.

    `result` is the RFC 8460 result type TLS reports and metrics use.
    """

    def __init__(self, code: int, enhanced: str, text: str, *, answered: bool = False,
                 result: str = "validation-failure") -> None:
        super().__init__(code, enhanced, text, answered=answered)
        self.result = result


# -- replies ---------------------------------------------------------------------------------


def parse_reply(lines: Sequence[bytes]) -> Reply:
    """Turn the raw lines of one reply into a Reply; ValueError if malformed."""
    first = lines[0]
    code_text = first[:3]
    if not code_text.isdigit() or first[3:4] not in (b" ", b"-", b"\r", b"\n", b""):
        raise ValueError(f"malformed reply line {_clean(first.decode('latin-1'))!r}")
    code = int(code_text)
    texts = [line[4:].decode("utf-8", "replace").strip() for line in lines]
    enhanced = ""
    match = _ENHANCED.match(texts[0])
    if match and match.group(1) == str(code)[0]:
        enhanced = match.group(0).strip()
        texts = [t[len(enhanced):].lstrip() if t.startswith(enhanced) else t for t in texts]
    return Reply(code, enhanced, _clean(" ".join(t for t in texts if t)))


def _clean(text: str) -> str:
    text = _CONTROL.sub(" ", text)
    return text if len(text) <= MAX_TEXT else text[:MAX_TEXT] + "…"


def dot_stuff(content: bytes) -> bytes:
    """Content plus the final ".", with every line starting with "." doubled (RFC 5321 4.5.2).

    A "." after a bare LF is doubled too, so a lenient server that ends DATA
    at LF.LF cannot be made to see a second message (SMTP smuggling).
    """
    body = content.replace(b"\n.", b"\n..")
    if body.startswith(b"."):
        body = b"." + body
    if body and not body.endswith(b"\r\n"):
        body += b"\r\n"
    return body + b".\r\n"


# -- the session -----------------------------------------------------------------------------


class SmtpConnection:
    """An open SMTP session, ready for `send()`; see the module docstring."""

    def __init__(
        self,
        endpoint: Endpoint,
        settings: SessionSettings,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self._reader = reader
        self._writer = writer
        self.extensions: dict[str, str] = {}
        self.tls = False
        self.tls_version = ""  # "TLSv1.3" once TLS is up
        self.cipher = ""
        # The verifying handshake's failure when MTA-STS testing fell back (Endpoint).
        self.tls_problem: TlsFailed | None = None
        self.messages = 0  # transactions that reached DATA on this connection
        self.usable = True  # false once the session state is unknown or the server said 421

    @classmethod
    async def open(cls, endpoint: Endpoint, settings: SessionSettings) -> SmtpConnection:
        """Connect and get through greeting, EHLO, STARTTLS and AUTH; SessionFailed if not."""
        try:
            return await cls._open(endpoint, settings)
        except TlsFailed as exc:
            if endpoint.tls is not TlsMode.OPPORTUNISTIC:
                raise
            problem = exc
        if endpoint.fallback_context is not None and problem.result != "starttls-not-supported":
            # MTA-STS testing: the policy failed, but delivery goes on as before it.
            log.info("verified TLS with %s failed (%s); retrying unverified", endpoint,
                     problem.text)
            relaxed = replace(endpoint, tls_context=endpoint.fallback_context,
                              fallback_context=None, authenticated=False)
            conn = await cls.open(relaxed, settings)
            conn.tls_problem = problem
            return conn
        # Like Postfix at "may" level: a failed handshake is retried in plaintext,
        # since opportunistic TLS never promised the recipient anything.
        log.info("TLS with %s failed; retrying without TLS", endpoint)
        conn = await cls._open(replace(endpoint, tls=TlsMode.NONE), settings)
        conn.tls_problem = problem
        return conn

    @classmethod
    async def _open(cls, endpoint: Endpoint, settings: SessionSettings) -> SmtpConnection:
        conn = await cls._connect(endpoint, settings)
        try:
            await conn._setup()
        except BaseException:
            conn.abort()
            raise
        return conn

    @classmethod
    async def _connect(cls, endpoint: Endpoint, settings: SessionSettings) -> SmtpConnection:
        implicit = endpoint.tls is TlsMode.IMPLICIT
        try:
            async with asyncio.timeout(settings.connect_timeout):
                reader, writer = await asyncio.open_connection(
                    endpoint.address, endpoint.port, limit=_LINE_LIMIT,
                    ssl=endpoint.tls_context if implicit else None,
                    server_hostname=endpoint.tls_name if implicit else None,
                )
        except TimeoutError:
            raise SessionFailed(451, "4.4.1", f"connect to {endpoint}: timed out") from None
        except (ssl.SSLError, ssl.CertificateError) as exc:
            reason = why_tls_failed(exc)
            raise TlsFailed(451, "4.7.5", f"TLS with {endpoint} failed: {reason}",
                            result=tls_result(exc)) from None
        except OSError as exc:
            # asyncio words a refused connection "Connect call failed (...)"; the errno is clearer.
            reason = os.strerror(exc.errno) if exc.errno else str(exc) or type(exc).__name__
            raise SessionFailed(451, "4.4.1", f"connect to {endpoint}: {reason}") from None
        conn = cls(endpoint, settings, reader, writer)
        if implicit:
            try:
                conn._tls_established()
            except TlsFailed:
                conn.abort()
                raise
        return conn

    async def _setup(self) -> None:
        greeting = await self._command(None, "greeting")
        if not greeting.is_success:
            raise self._refused(greeting, "greeting")
        await self._ehlo()
        if self._wants_starttls():
            await self._starttls()
            await self._ehlo()
        elif self.endpoint.tls is TlsMode.REQUIRED and not self.tls:
            raise TlsFailed(451, "4.7.5", f"TLS is required, but was not offered by "
                            f"{self.endpoint}", answered=True, result="starttls-not-supported")
        if self.endpoint.username:
            await self._auth()

    def _wants_starttls(self) -> bool:
        if self.tls or self.endpoint.tls in (TlsMode.NONE, TlsMode.IMPLICIT):
            return False
        return "STARTTLS" in self.extensions

    async def _ehlo(self) -> None:
        reply, lines = await self._command_lines(f"EHLO {self.settings.helo_name}", "EHLO")
        if reply.code in (500, 502):  # a pre-ESMTP server (RFC 5321 3.2)
            reply, lines = await self._command_lines(f"HELO {self.settings.helo_name}", "HELO")
        if not reply.is_success:
            raise self._refused(reply, "EHLO")
        self.extensions = {}
        for line in lines[1:]:
            keyword, _, params = line[4:].decode("ascii", "replace").strip().partition(" ")
            self.extensions[keyword.upper()] = params

    async def _starttls(self) -> None:
        reply = await self._command("STARTTLS", "STARTTLS")
        if not reply.is_success:
            if self.endpoint.tls is TlsMode.OPPORTUNISTIC:
                return  # the session is still fine in plaintext
            raise TlsFailed(451, "4.7.5", f"{self.endpoint} refused STARTTLS: {reply}",
                            answered=True, result="starttls-not-supported")
        assert self.endpoint.tls_context is not None
        self._discard_plaintext()
        try:
            await self._writer.start_tls(
                self.endpoint.tls_context, server_hostname=self.endpoint.tls_name,
                ssl_handshake_timeout=self.settings.command_timeout,
            )
        except (ssl.SSLError, OSError, TimeoutError, ValueError) as exc:
            self.usable = False
            raise TlsFailed(451, "4.7.5", f"TLS with {self.endpoint} failed: {why_tls_failed(exc)}",
                            answered=True, result=tls_result(exc)) from None
        self._tls_established()

    def _tls_established(self) -> None:
        """Note version and cipher, and run the endpoint's own certificate check (DANE)."""
        self.tls = True
        ssl_object = self._writer.get_extra_info("ssl_object")
        if ssl_object is None:
            return
        self.tls_version = ssl_object.version() or ""
        cipher = ssl_object.cipher()
        self.cipher = cipher[0] if cipher else ""
        if self.endpoint.check_peer is not None:
            problem = self.endpoint.check_peer(peer_chain(ssl_object))
            if problem is not None:
                self.usable = False
                result, reason = problem
                raise TlsFailed(451, "4.7.5", f"TLS with {self.endpoint}: {reason}",
                                answered=True, result=result)

    def _discard_plaintext(self) -> None:
        """Drop whatever the server sent after its reply to STARTTLS, before TLS.

        A legitimate server sends nothing there; a man in the middle can append
        plaintext replies ("250 SIZE 10", a fake 5xx) that would otherwise be read
        as the server's first answers inside TLS (RFC 3207 section 6; the client
        side of CVE-2011-0411, "STARTTLS response injection")."""
        buffered: bytearray = self._reader._buffer  # type: ignore[attr-defined]
        if buffered:
            log.warning("%s sent %d octets after its STARTTLS reply: discarded",
                        self.endpoint, len(buffered))
            buffered.clear()

    async def _auth(self) -> None:
        user = self.endpoint.username or ""
        password = self.endpoint.password.value if self.endpoint.password else ""
        mechanisms = self.extensions.get("AUTH", "").upper().split()
        if "PLAIN" in mechanisms:
            token = _b64(f"\0{user}\0{password}")
            reply = await self._command(f"AUTH PLAIN {token}", "AUTH", secret=True)
        elif "LOGIN" in mechanisms:
            reply = await self._command("AUTH LOGIN", "AUTH")
            if reply.code == 334:
                reply = await self._command(_b64(user), "AUTH", secret=True)
            if reply.code == 334:
                reply = await self._command(_b64(password), "AUTH", secret=True)
        else:
            raise SessionFailed(451, "4.7.0", f"{self.endpoint} offers no AUTH PLAIN or LOGIN "
                                f"(offered: {' '.join(mechanisms) or 'none'})", answered=True)
        if reply.code != 235:
            raise self._refused(reply, "AUTH")

    # -- transactions ---------------------------------------------------------------------

    async def send(
        self, request: MailRequest, content: bytes, *, reset: bool
    ) -> TransactionReplies:
        """Run one transaction; `reset` sends RSET first (a reused connection).

        Replies of any code are returned, not raised; SessionFailed means the
        session broke and the outcome is unknown (StaleConnection: it broke
        before the transaction began, so nothing happened).
        """
        if reset and self.is_closing:
            raise StaleConnection(451, "4.4.2", f"{self.endpoint} closed the idle connection")
        prepared = self._prepared(request, content)
        if isinstance(prepared, Reply):
            return TransactionReplies(prepared, tuple(prepared for _ in request.recipients))
        content = prepared
        mail = self._mail_command(request, len(content))
        rcpts = [f"RCPT TO:<{r}>" for r in request.recipients]
        try:
            if "PIPELINING" in self.extensions:
                replies = await self._pipelined(mail, rcpts, reset)
            else:
                replies = await self._lockstep(mail, rcpts, reset)
            if replies.data is not None and replies.data.code == 354:
                replies = await self._content(replies, content)
        except BaseException:
            self.usable = False
            raise
        self.usable = self.usable and all(r.code != 421 for r in _all(replies))
        return replies

    def _prepared(self, request: MailRequest, content: bytes) -> bytes | Reply:
        """The content for this server (7-bit if it must be: eight_bit.py), or what it
        cannot take, decided before sending anything (Postfix does too)."""
        addresses = (request.mail_from, *request.recipients)
        for address in addresses:
            if _CONTROL.search(address):
                raise ValueError("control character in an address")  # Delivery filters these
        prepared = content_for(content, addresses, request.smtputf8, self.extensions,
                               str(self.endpoint))
        if isinstance(prepared, Reply):
            return prepared
        limit = self.extensions.get("SIZE", "")
        if limit.isdigit() and 0 < int(limit) < len(prepared):
            return Reply(552, "5.3.4", f"message size {len(prepared)} exceeds size limit "
                         f"{limit} of {self.endpoint}")
        return prepared

    def _mail_command(self, request: MailRequest, size: int) -> str:
        command = f"MAIL FROM:<{request.mail_from}>"
        if "SIZE" in self.extensions:
            command += f" SIZE={size}"
        if request.eight_bit and "8BITMIME" in self.extensions:
            command += " BODY=8BITMIME"
        if request.smtputf8 and "SMTPUTF8" in self.extensions:
            command += " SMTPUTF8"
        if request.requiretls:  # Delivery checked that the server offers it (RFC 8689 4.2)
            command += " REQUIRETLS"
        return command

    async def _pipelined(self, mail: str, rcpts: list[str], reset: bool) -> TransactionReplies:
        commands = (["RSET"] if reset else []) + [mail, *rcpts, "DATA"]
        self._write("".join(c + "\r\n" for c in commands).encode("utf-8"), "MAIL")
        if reset:
            await self._reset_reply()
        loop = asyncio.get_running_loop()
        timeout = self.settings.command_timeout
        stage = "MAIL"
        try:
            async with asyncio.timeout(timeout) as deadline:
                mail_reply = parse_reply(await self._read_lines(stage))
                stage = "RCPT"
                rcpt_replies: list[Reply] = []
                for _ in rcpts:
                    # Each reply gets the full command timeout, as if sent alone.
                    deadline.reschedule(loop.time() + timeout)
                    rcpt_replies.append(parse_reply(await self._read_lines(stage)))
                stage = "DATA"
                deadline.reschedule(loop.time() + timeout)
                data_reply = parse_reply(await self._read_lines(stage))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            raise self._broken(exc, stage) from None
        return TransactionReplies(mail_reply, tuple(rcpt_replies), data_reply)

    async def _lockstep(self, mail: str, rcpts: list[str], reset: bool) -> TransactionReplies:
        if reset:
            self._write(b"RSET\r\n", "RSET")
            await self._reset_reply()
        mail_reply = await self._command(mail, "MAIL")
        if not mail_reply.is_success:
            return TransactionReplies(mail_reply, tuple(mail_reply for _ in rcpts))
        rcpt_replies = tuple([await self._command(r, "RCPT") for r in rcpts])
        if not any(r.is_success for r in rcpt_replies):
            return TransactionReplies(mail_reply, rcpt_replies)
        data_reply = await self._command("DATA", "DATA")
        return TransactionReplies(mail_reply, rcpt_replies, data_reply)

    async def _reset_reply(self) -> None:
        """Read the RSET reply; any trouble means the idle connection went stale."""
        try:
            reply = await self._command(None, "RSET")
        except SessionFailed as exc:
            raise StaleConnection(exc.code, exc.enhanced, exc.text) from None
        if not reply.is_success:
            raise StaleConnection(451, "4.4.2", f"{self.endpoint} refused RSET: {reply}")

    async def _content(self, replies: TransactionReplies, content: bytes) -> TransactionReplies:
        accepted = replies.mail.is_success and any(r.is_success for r in replies.rcpt)
        # A server that says 354 with no valid recipient (RFC 2920 3.1) gets an empty message.
        payload = dot_stuff(content) if accepted else b".\r\n"
        try:
            async with asyncio.timeout(self.settings.data_timeout):
                self._writer.write(payload)
                await self._writer.drain()
                final = parse_reply(await self._read_lines("end of DATA"))
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            raise self._broken(exc, "end of DATA") from None
        if not accepted:
            return TransactionReplies(replies.mail, replies.rcpt, replies.data)
        self.messages += 1
        return TransactionReplies(replies.mail, replies.rcpt, replies.data, final)

    # -- closing --------------------------------------------------------------------------

    def close(self) -> None:
        """Say QUIT and close without waiting for the reply (Postfix does the same on idle)."""
        if not self._writer.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write(b"QUIT\r\n")
            self._writer.close()
        self.usable = False

    async def wait_closed(self, timeout: float = 2.0) -> None:
        """After close(): let a TLS session finish its close_notify exchange, which
        needs the loop; a peer that does not answer in time is cut off."""
        with contextlib.suppress(OSError, TimeoutError, ssl.SSLError):
            async with asyncio.timeout(timeout):
                await self._writer.wait_closed()
        self.abort()

    def abort(self) -> None:
        transport = self._writer.transport
        if not transport.is_closing():
            transport.abort()
        self.usable = False

    @property
    def is_closing(self) -> bool:
        return self._writer.is_closing() or self._reader.at_eof()

    # -- plumbing -------------------------------------------------------------------------

    async def _command(self, command: str | None, stage: str, *, secret: bool = False) -> Reply:
        reply, _ = await self._command_lines(command, stage, secret=secret)
        return reply

    async def _command_lines(
        self, command: str | None, stage: str, *, secret: bool = False
    ) -> tuple[Reply, list[bytes]]:
        """Send one command (None: just read, for the greeting) and read its reply."""
        if command is not None:
            if log.isEnabledFor(logging.DEBUG):
                log.debug("%s < %s", self.endpoint, "AUTH ***" if secret else command)
            self._write(command.encode("utf-8") + b"\r\n", stage)
        try:
            async with asyncio.timeout(self.settings.command_timeout):
                lines = await self._read_lines(stage)
            return parse_reply(lines), lines
        except (OSError, TimeoutError, ValueError, asyncio.IncompleteReadError) as exc:
            raise self._broken(exc, stage) from None

    def _write(self, data: bytes, stage: str) -> None:
        if self._writer.is_closing():
            raise SessionFailed(451, "4.4.2", f"lost connection with {self.endpoint} "
                                f"before {stage}")
        self._writer.write(data)

    async def _read_lines(self, stage: str) -> list[bytes]:
        lines: list[bytes] = []
        while True:
            try:
                line = await self._reader.readuntil(b"\n")
            except asyncio.LimitOverrunError:
                raise ValueError(f"reply line longer than {_LINE_LIMIT} bytes") from None
            lines.append(line)
            if line[3:4] != b"-":
                return lines
            if len(lines) >= MAX_REPLY_LINES:
                raise ValueError(f"reply of more than {MAX_REPLY_LINES} lines")

    def _broken(self, exc: BaseException, stage: str) -> SessionFailed:
        self.usable = False
        if isinstance(exc, TimeoutError):
            why = "conversation timed out"
        elif isinstance(exc, asyncio.IncompleteReadError | ConnectionError):
            why = "lost connection"
        elif isinstance(exc, ValueError):
            why = f"protocol error ({exc})"
        else:
            why = f"connection error ({getattr(exc, 'strerror', None) or type(exc).__name__})"
        return SessionFailed(451, "4.4.2", f"{why} with {self.endpoint} while waiting for "
                             f"the reply to {stage}")

    def _refused(self, reply: Reply, stage: str) -> SessionFailed:
        """A server refusing the session is the host's problem, never the recipients': defer."""
        self.usable = False
        enhanced = "4" + reply.enhanced[1:] if reply.enhanced else "4.4.0"
        text = f"{self.endpoint} refused {stage}: {reply}"
        return SessionFailed(reply.code if reply.is_transient else 451, enhanced, text,
                             answered=True)

    def __repr__(self) -> str:
        state = "TLS" if self.tls else "plain"
        return f"<SmtpConnection {self.endpoint} {state} messages={self.messages}>"


def _b64(text: str) -> str:
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def _all(replies: TransactionReplies) -> tuple[Reply, ...]:
    extra = tuple(r for r in (replies.data, replies.final) if r is not None)
    return (replies.mail, *replies.rcpt, *extra)
