"""SMTP intake: aiosmtpd speaks the protocol, hooks translate each command into
an `Acceptor` call and return its reply (Postfix smtpd(8); the session counts
are anvil(8)'s job there).

One `IntakeServer` per configured listener:

- `relay`: clients in `ListenerConfig.networks` may relay without AUTH.
- `submission`: MAIL needs SMTP AUTH (PLAIN, LOGIN), and AUTH is only offered
  and accepted once TLS is up — after STARTTLS (`tls: starttls`, which is then
  also required before MAIL) or from the first byte (`tls: implicit`).

Either way a client that is neither in the networks nor authenticated gets
554 5.7.1 at RCPT (accept.py): never an open relay.

Limits (`Config.limits`, read when a session starts, so a SIGHUP reload applies
to new sessions): message size (advertised as SIZE), recipients per message,
an idle timeout between client input and a whole-session timeout (421 4.4.2,
then close), concurrent sessions per listener and per client IP (421 4.7.0 at
connect). Timers run on the event loop's monotonic clock: they bound real time
a socket may be held, not scheduling decisions.

What aiosmtpd leaves to us, and where it is done:

- `push()` gives aiosmtpd's own replies ("250 OK", "503 Error: need RCPT
  command") enhanced status codes, since we advertise ENHANCEDSTATUSCODES.
- `smtp_DATA()` raises the line-read limit during DATA (see there).
- `auth_PLAIN/LOGIN` reuse aiosmtpd's decoding, then run the scrypt check in a
  thread (aiosmtpd's authenticator callback is synchronous), behind the
  listener's `AuthThrottle` (failure delays and lockouts, see auth.py).
- `push()` also makes every reply line printable ASCII: aiosmtpd echoes client
  input ("command X not recognized"), which must not carry a CR, LF or NUL.
- `smtp_STARTTLS()` ends a session whose connection closed mid-handshake,
  which asyncio never reports (it would hold its session slot for good).

Security: the most exposed module — everything here comes from the network.
aiosmtpd ends DATA only at <CRLF>.<CRLF> (1.4.6, the SMTP smuggling fix); the
content is then normalized by accept.py so that no bare CR or LF is relayed.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import ssl
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import AnyStr

from aiosmtpd.smtp import MISSING, SMTP, AuthResult, LoginPassword, TLSSetupException, syntax
from aiosmtpd.smtp import Envelope as SMTPEnvelope
from aiosmtpd.smtp import Session as SMTPSession

from gateway import metrics
from gateway.clock import Clock
from gateway.config import Config
from gateway.errors import ConfigError, ConfigProblem
from gateway.intake import replies
from gateway.intake.accept import Acceptor, SessionInfo, Transaction
from gateway.intake.addresses import envelope_path
from gateway.intake.auth import Authenticator, AuthThrottle
from gateway.intake.data_reader import read_data
from gateway.intake.settings import IPNetwork, Limits, ListenerConfig
from gateway.intake.speedups import cache_reflection, parse_path
from gateway.model import Client, Envelope, Reply

__all__ = ["IntakeSMTP", "IntakeServer"]

log = logging.getLogger(__name__)

MAX_AUTH_ATTEMPTS = 3  # per session; then 421 and close (slows password guessing)
DATA_GRACE = 10.0  # seconds stop() lets sessions in DATA finish
_NULL_SENDER = "<>"  # aiosmtpd needs a true value in envelope.mail_from after MAIL
_DATA_READ_SLACK = 1024  # octets over the size limit before a "line" read gives up
_HANDSHAKE_TIMEOUT = 30.0  # implicit TLS: seconds for the client to finish the handshake


@dataclass(frozen=True)
class _Settings:
    """What a session needs from the configuration, fixed when it starts."""

    listener: ListenerConfig
    hostname: str
    limits: Limits
    authenticator: Authenticator
    tls_context: ssl.SSLContext | None

    @property
    def offers_auth(self) -> bool:
        return self.listener.requires_auth or self.authenticator.has_users


class IntakeServer:
    """One listening socket and its sessions."""

    def __init__(
        self, listener: ListenerConfig, config: Config, acceptor: Acceptor, clock: Clock
    ) -> None:
        self._tls = _server_tls_context(listener, config)
        self._settings = _Settings(
            listener, config.hostname, config.limits, Authenticator(config.users), self._tls
        )
        self._sessions: set[IntakeSMTP] = set()
        self._per_ip: dict[str, int] = {}
        self._tasks: set[asyncio.Task[Reply]] = set()
        self._last_refusal_log = -1.0e9
        self._refusals_unlogged = 0
        self._hooks = _Hooks(acceptor, clock, self._tasks)
        self._server: asyncio.Server | None = None
        self._stopping = False
        # Shared by every session of this listener in this process; survives reloads.
        self.auth_throttle = AuthThrottle()
        self.data_grace = min(DATA_GRACE, config.shutdown_timeout)
        self.port = listener.port

    @property
    def listener(self) -> ListenerConfig:
        return self._settings.listener

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    @property
    def serving(self) -> bool:
        """Accepting connections (for the admin API's /readyz)."""
        return self._server is not None and self._server.is_serving()

    async def start(self, *, reuse_port: bool = False) -> None:
        """Listen. With `reuse_port`, intake worker processes bind the same port and the
        kernel spreads connections between them (SO_REUSEPORT)."""
        listener = self._settings.listener
        implicit = listener.tls == "implicit"
        _quiet_aiosmtpd()
        cache_reflection()
        self._server = await asyncio.get_running_loop().create_server(
            # The factory reads self._settings on each connection: reconfigure() applies
            # to sessions that start afterwards.
            lambda: IntakeSMTP(self, self._hooks, self._settings),
            host=listener.address,
            port=listener.port,
            ssl=self._tls if implicit else None,
            # Sessions are counted once the handshake is done; until then this bounds them.
            ssl_handshake_timeout=min(self._settings.limits.command_timeout, _HANDSHAKE_TIMEOUT)
            if implicit else None,
            reuse_address=True,
            reuse_port=reuse_port or None,
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        metrics.declare_listener(listener.name)
        log.info("listener %s (%s, tls %s) on %s:%d", listener.name, listener.kind,
                 listener.tls, listener.address, self.port)

    async def stop(self) -> None:
        """Stop accepting, let sessions in DATA finish (briefly), close the rest."""
        if self._server is None:
            return
        self._stopping = True
        self._server.close()
        for session in list(self._sessions):
            session.shut_down()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.data_grace
        while (self._sessions or self._tasks) and loop.time() < deadline:
            await asyncio.sleep(0.02)
        for session in list(self._sessions):
            session.abort()
        if self._tasks:
            # A message being stored finishes (it is fsynced, then its on_queued runs).
            await asyncio.wait(set(self._tasks))
        await self._server.wait_closed()
        self._server = None
        log.info("listener %s stopped", self._settings.listener.name)

    def reconfigure(self, config: Config) -> None:
        """New limits, users and networks (and a re-read certificate) for new sessions."""
        old = self._settings.listener
        listener = next((lst for lst in config.listeners if lst.name == old.name), None)
        if listener is None:
            log.warning("listener %s is gone from the configuration: a restart removes it",
                        old.name)
            listener = old
        if (listener.address, listener.port, listener.tls) != (old.address, old.port, old.tls):
            log.warning("listener %s: address, port and tls changes need a restart", old.name)
            listener = replace(listener, address=old.address, port=old.port, tls=old.tls)
        listener = self._reload_certificate(listener, old)
        self._settings = _Settings(
            listener, config.hostname, config.limits, Authenticator(config.users), self._tls
        )

    def _reload_certificate(self, listener: ListenerConfig, old: ListenerConfig) -> ListenerConfig:
        # Reloaded even if the paths are the same: a renewed certificate keeps its name.
        if self._tls is None or listener.cert_file is None or listener.key_file is None:
            return listener
        try:
            self._tls.load_cert_chain(listener.cert_file, listener.key_file)
        except (OSError, ssl.SSLError) as exc:
            log.error("listener %s: cannot load %s: %s; keeping the old certificate",
                      listener.name, listener.cert_file, exc)
            return replace(listener, cert_file=old.cert_file, key_file=old.key_file)
        return listener

    # -- session accounting (called by IntakeSMTP) ---------------------------------------------
    def admit(self, session: IntakeSMTP, address: str) -> Reply | None:
        """Register a new session, or say why it must be refused."""
        limits = session.settings.limits
        if self._stopping:
            return replies.SHUTTING_DOWN
        if len(self._sessions) >= limits.max_sessions:
            return replies.TOO_MANY_SESSIONS
        if self._per_ip.get(address, 0) >= limits.max_sessions_per_ip:
            return replies.TOO_MANY_SESSIONS_FROM_IP
        self._sessions.add(session)
        self._per_ip[address] = self._per_ip.get(address, 0) + 1
        return None

    def log_refusal(self, address: str, refusal: Reply) -> None:
        """At most one line per second: a connection flood must not become a log flood."""
        now = asyncio.get_running_loop().time()
        if now - self._last_refusal_log < 1.0:
            self._refusals_unlogged += 1
            return
        more = (f" (and {self._refusals_unlogged} more refused connections)"
                if self._refusals_unlogged else "")
        log.warning("refused %s on %s: %s%s", address, self._settings.listener.name,
                    refusal.text, more)
        self._last_refusal_log = now
        self._refusals_unlogged = 0

    def release(self, session: IntakeSMTP, address: str) -> None:
        if session not in self._sessions:
            return  # connection_lost can come twice (a failed STARTTLS handshake)
        self._sessions.discard(session)
        left = self._per_ip.get(address, 1) - 1
        if left > 0:
            self._per_ip[address] = left
        else:
            self._per_ip.pop(address, None)

    def __repr__(self) -> str:
        listener = self._settings.listener
        state = "STOPPING" if self._stopping else "RUNNING" if self._server else "IDLE"
        return (f"<IntakeServer {listener.name} {listener.kind} {listener.address}:{self.port} "
                f"{state} sessions={len(self._sessions)}>")


class IntakeSMTP(SMTP):
    """One SMTP session: aiosmtpd's protocol engine with our replies, limits and timers."""

    def __init__(self, server: IntakeServer, hooks: _Hooks, settings: _Settings) -> None:
        # Set before SMTP.__init__, which inspects the instance (inspect.getmembers).
        self.settings = settings
        self.raw_argument = ""  # the MAIL/RCPT argument exactly as the client sent it
        self.requiretls_requested = False  # this MAIL command carried REQUIRETLS
        self.in_data = False
        self._server = server
        self._address = ""
        self._port = 0
        self._trusted = False  # client address in listener.networks
        self._admitted = False
        self._refused = False
        self._tls_up = False  # a STARTTLS handshake completed
        self._lost = False
        self._closing = False
        self._verb = ""
        self._helo_reply = False
        self._busy = False
        self._last_input = 0.0
        # Intake latency runs from the connection, or from MAIL on a reused session, to 250.
        self.intake_started: float | None = None
        self._idle_timer: asyncio.TimerHandle | None = None
        self._session_timer: asyncio.TimerHandle | None = None
        listener = settings.listener
        super().__init__(
            hooks,
            data_size_limit=settings.limits.max_message_size,
            enable_SMTPUTF8=True,
            hostname=settings.hostname,
            ident="ESMTP",
            # Implicit TLS is done by the listening socket; aiosmtpd must not offer STARTTLS.
            tls_context=settings.tls_context if listener.tls == "starttls" else None,
            require_starttls=listener.tls == "starttls" and listener.requires_auth,
            # aiosmtpd only knows about STARTTLS; on an implicit-TLS socket it is always on.
            auth_require_tls=listener.tls != "implicit",
            authenticator=_decoded_credentials,
            command_call_limit={"AUTH": MAX_AUTH_ATTEMPTS, "*": sys.maxsize},
            # A backstop only: our own idle and session timers fire first.
            timeout=settings.limits.session_timeout + settings.limits.command_timeout,
            loop=asyncio.get_running_loop(),
        )

    @property
    def tls_active(self) -> bool:
        return self._tls_protocol is not None or self.settings.listener.tls == "implicit"

    # -- connection ------------------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._admitted:
            self._tls_up = True
            super().connection_made(transport)  # again, once the STARTTLS handshake is done
            return
        self._address, self._port = _peer(transport.get_extra_info("peername"))
        refusal = self._server.admit(self, self._address)
        if refusal is not None:
            self._refused = True
            self._server.log_refusal(self._address, refusal)
            if isinstance(transport, asyncio.WriteTransport):
                transport.write(f"{refusal}\r\n".encode("ascii"))
            transport.close()
            return
        self._admitted = True
        self._trusted = _in_networks(self._address, self.settings.listener.networks)
        super().connection_made(transport)
        limits = self.settings.limits
        self._last_input = self.intake_started = self.loop.time()
        self._idle_timer = self.loop.call_later(limits.command_timeout, self._check_idle)
        self._session_timer = self.loop.call_later(
            limits.session_timeout, self._close_with, replies.TIMEOUT
        )

    def connection_lost(self, error: Exception | None) -> None:
        if self._lost:
            return  # see _handshake_abandoned()
        self._lost = True
        for timer in (self._idle_timer, self._session_timer):
            if timer is not None:
                timer.cancel()
        if self._refused:
            # aiosmtpd never saw this connection; only the stream machinery needs closing.
            asyncio.StreamReaderProtocol.connection_lost(self, error)
            return
        self._server.release(self, self._address)
        super().connection_lost(error)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._last_input = self.loop.time()
        super().data_received(data)

    def _check_idle(self) -> None:
        timeout = self.settings.limits.command_timeout
        idle = self.loop.time() - self._last_input
        if self._busy or idle < timeout:
            # The client is not idle, or is waiting for us (a message being stored).
            self._idle_timer = self.loop.call_later(timeout - idle if not self._busy
                                                    else timeout, self._check_idle)
            return
        log.info("%s: no input for %.1fs, closing", self._address, idle)
        self._close_with(replies.TIMEOUT)

    @contextmanager
    def processing(self) -> Iterator[None]:
        """The client is waiting for us: the idle timeout does not run meanwhile."""
        self._busy = True
        try:
            yield
        finally:
            self._busy = False
            self._last_input = self.loop.time()

    def shut_down(self) -> None:
        """The server is stopping: close now, or after the reply to a DATA in progress."""
        self._closing = True
        if not self.in_data:
            self._close_with(replies.SHUTTING_DOWN)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()  # type: ignore[attr-defined]

    def _close_with(self, reply: Reply) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if isinstance(transport, asyncio.WriteTransport):
            transport.write(f"{reply}\r\n".encode("ascii"))
        transport.close()

    def _getaddr(self, arg: str) -> tuple[str | None, str | None]:
        return parse_path(arg, self.local_part_limit)  # see speedups.py

    # -- replies ---------------------------------------------------------------------------------
    async def push(self, status: AnyStr) -> None:
        if isinstance(status, str):
            line = replies.enhance(status, verb=self._verb, helo=self._helo_reply)
            await super().push(replies.printable_line(line))
        else:
            await super().push(status)  # AUTH challenges (334): bytes, no status code

    @contextmanager
    def _answering(self, verb: str, argument: str | None = None) -> Iterator[None]:
        self._verb = verb
        self._helo_reply = verb in ("HELO", "EHLO")
        self.raw_argument = argument or ""
        try:
            yield
        finally:
            self._verb = ""
            self._helo_reply = False

    # -- commands: thin wrappers that note what is being answered --------------------------------
    @syntax("HELO hostname")
    async def smtp_HELO(self, hostname: str) -> None:
        with self._answering("HELO"):
            await super().smtp_HELO(hostname)

    @syntax("EHLO hostname")
    async def smtp_EHLO(self, hostname: str) -> None:
        with self._answering("EHLO"):
            await super().smtp_EHLO(hostname)

    @syntax("MAIL FROM: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_MAIL(self, arg: str | None) -> None:
        with self._answering("MAIL", arg):
            # aiosmtpd refuses parameters it does not know; REQUIRETLS is taken off here.
            arg, self.requiretls_requested = _take_requiretls(arg)
            if self.requiretls_requested and not self.tls_active:
                await self.push(str(replies.REQUIRETLS_NEEDS_TLS))
                return
            await super().smtp_MAIL(arg)

    @syntax("RCPT TO: <address>", extended=" [SP <mail-parameters>]")
    async def smtp_RCPT(self, arg: str | None) -> None:
        with self._answering("RCPT", arg):
            await super().smtp_RCPT(arg)

    @syntax("STARTTLS", when="tls_context")
    async def smtp_STARTTLS(self, arg: str) -> None:
        if self.tls_active:
            await self.push(str(replies.TLS_ALREADY_ACTIVE))
            return
        await super().smtp_STARTTLS(arg)
        if self._tls_protocol is not None and not self._tls_up:
            self._handshake_abandoned()

    def _handshake_abandoned(self) -> None:
        """The connection closed during the STARTTLS handshake, without an error (the
        client hung up, or our timer closed it). asyncio's SSL layer then never calls
        connection_lost, and aiosmtpd would carry on reading a stream that never ends:
        the session would hold its slot (per IP and in total) for good."""
        log.info("%s: connection closed during the STARTTLS handshake", self._address)
        if isinstance(self._original_transport, asyncio.Transport):
            self._original_transport.abort()
        self.connection_lost(None)

    @syntax("DATA")
    async def smtp_DATA(self, arg: str) -> None:
        # The body is read in one piece up to <CRLF>.<CRLF> (data_reader.py), bounded
        # by the StreamReader limit, which is the size limit during DATA (plus slack):
        # the size check decides, and accept.py checks line lengths after
        # normalization (a message whose lines end in bare LF is one long "line").
        limit = self.settings.limits.max_message_size + _DATA_READ_SLACK
        self.in_data = True
        self._reader._limit = limit  # type: ignore[attr-defined]
        self.line_length_limit = limit
        try:
            with self._answering("DATA"):
                await self._data(arg)
        finally:
            self.line_length_limit = SMTP.line_length_limit
            self._reader._limit = SMTP.line_length_limit  # type: ignore[attr-defined]
            self.in_data = False
        if self._closing:
            self._close_with(replies.SHUTTING_DOWN)

    async def _data(self, arg: str) -> None:
        """aiosmtpd's smtp_DATA, with the body read in one piece (data_reader.py)."""
        if await self.check_helo_needed() or await self.check_auth_needed("DATA"):
            return
        assert self.envelope is not None
        if not self.envelope.rcpt_tos:
            await self.push("503 Error: need RCPT command")
            return
        if arg:
            await self.push("501 Syntax: DATA")
            return
        await self.push("354 End data with <CR><LF>.<CR><LF>")
        try:
            content = await read_data(self._reader, self.data_size_limit or 0)
        except asyncio.IncompleteReadError:
            log.info("%s: connection lost during DATA", self._address)
            self._writer.close()
            return
        except asyncio.CancelledError:
            log.info("%s: connection lost during DATA", self._address)
            self._writer.close()
            raise
        if content is None:
            await self.push("552 Error: Too much mail data")
            self._set_post_data_state()  # type: ignore[no-untyped-call]
            return
        self.envelope.content = self.envelope.original_content = content
        status = await self._call_handler_hook("DATA")
        self._set_post_data_state()  # type: ignore[no-untyped-call]
        await self.push("250 OK" if status is MISSING else status)

    # -- AUTH: aiosmtpd decodes, we check (in a thread) ------------------------------------------
    async def auth_PLAIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._check_credentials(await super().auth_PLAIN(server, args))

    async def auth_LOGIN(self, server: SMTP, args: list[str]) -> AuthResult:
        return await self._check_credentials(await super().auth_LOGIN(server, args))

    async def _check_credentials(self, decoded: AuthResult) -> AuthResult:
        credentials = decoded.auth_data
        if not decoded.success or not isinstance(credentials, LoginPassword):
            return decoded  # aiosmtpd has already answered (bad base64, "*" abort)
        throttle = self._server.auth_throttle
        login = credentials.login.decode("utf-8", "replace")
        if throttle.locked(self._address, login):
            # No password is checked while locked out, not even the right one.
            log.warning("%s: AUTH refused on %s: locked out after repeated failures",
                        self._address, self.settings.listener.name)
            return AuthResult(success=False, handled=False, message=str(replies.AUTH_LOCKED))
        with self.processing():
            user = await self.settings.authenticator.check(credentials.login, credentials.password)
            if user is None:
                delay = throttle.failed(self._address, login)
                log.warning("%s: authentication failed on %s (answer delayed %.1fs)",
                            self._address, self.settings.listener.name, delay)
                await asyncio.sleep(delay)  # slows guessing; other sessions go on
                return AuthResult(success=False, handled=False)
        throttle.succeeded(user)
        log.info("%s: authenticated as %s", self._address, user)
        return AuthResult(success=True, auth_data=user)

    # -- views for the hooks ---------------------------------------------------------------------
    def ehlo_lines(self) -> list[str]:
        keywords = [
            self.hostname,
            "PIPELINING",
            f"SIZE {self.settings.limits.max_message_size}",
            "8BITMIME",
            "SMTPUTF8",
            "ENHANCEDSTATUSCODES",
        ]
        if self.settings.listener.tls == "starttls" and not self.tls_active:
            keywords.append("STARTTLS")
        if self.tls_active and self.settings.offers_auth:
            keywords.append("AUTH PLAIN LOGIN")
        if self.tls_active:
            keywords.append("REQUIRETLS")  # RFC 8689 section 4: never in plaintext
        return [f"250-{k}" for k in keywords[:-1]] + [f"250 {keywords[-1]}"]

    def session_info(self) -> SessionInfo:
        assert self.session is not None
        user = self.session.auth_data if self.session.authenticated else None
        client = Client(
            listener=self.settings.listener.name,
            address=self._address,
            port=self._port,
            helo=_printable(self.session.host_name or ""),
            auth_user=user if isinstance(user, str) else None,
            tls=self.tls_active,
        )
        return SessionInfo(client, may_relay=self._trusted or client.auth_user is not None)

    def transaction(self, envelope: SMTPEnvelope) -> Transaction:
        body = "8BITMIME" if "BODY=8BITMIME" in envelope.mail_options else "7BIT"
        sender = envelope.mail_from or ""
        return Transaction(
            session=self.session_info(),
            mail_from="" if sender == _NULL_SENDER else sender,
            smtputf8=bool(envelope.smtp_utf8),
            body_type=body,
            recipients=tuple(envelope.rcpt_tos),
            requiretls="REQUIRETLS" in envelope.mail_options,
        )

    def __repr__(self) -> str:
        state = "DATA" if self.in_data else "CLOSING" if self._closing else "OPEN"
        return f"<IntakeSMTP {self.settings.listener.name} {self._address}:{self._port} {state}>"


class _Hooks:
    """aiosmtpd's handler: each hook turns one command into an Acceptor call."""

    def __init__(self, acceptor: Acceptor, clock: Clock, tasks: set[asyncio.Task[Reply]]) -> None:
        self._acceptor = acceptor
        self._clock = clock
        self._tasks = tasks

    async def handle_EHLO(
        self, server: IntakeSMTP, session: SMTPSession, envelope: SMTPEnvelope,
        hostname: str, responses: list[str],
    ) -> list[str]:
        session.host_name = hostname
        return server.ehlo_lines()

    async def handle_MAIL(
        self, server: IntakeSMTP, session: SMTPSession, envelope: SMTPEnvelope,
        address: str, mail_options: list[str],
    ) -> str:
        if server.intake_started is None:
            server.intake_started = server.loop.time()
        if server.settings.listener.requires_auth and not session.authenticated:
            return str(replies.AUTH_REQUIRED)
        sender = envelope_path(server.raw_argument, "FROM:")
        if sender is None:
            return str(replies.bad_sender("cannot parse the address"))
        reply = await self._acceptor.mail(
            server.session_info(), sender, smtputf8=bool(envelope.smtp_utf8)
        )
        if reply.is_success:
            envelope.mail_from = sender or _NULL_SENDER
            envelope.mail_options.extend(mail_options)
            if server.requiretls_requested:
                envelope.mail_options.append("REQUIRETLS")
        return str(reply)

    async def handle_RCPT(
        self, server: IntakeSMTP, session: SMTPSession, envelope: SMTPEnvelope,
        address: str, rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= server.settings.limits.max_recipients:
            metrics.record_rcpt_refused(server.settings.listener.name,
                                        replies.TOO_MANY_RECIPIENTS, "too_many_recipients")
            return str(replies.TOO_MANY_RECIPIENTS)
        recipient = envelope_path(server.raw_argument, "TO:")
        if not recipient:
            return str(replies.bad_recipient("cannot parse the address"))
        reply = await self._acceptor.rcpt(server.transaction(envelope), recipient)
        if reply.is_success:
            envelope.rcpt_tos.append(recipient)
            envelope.rcpt_options.extend(rcpt_options)
        return str(reply)

    async def handle_DATA(
        self, server: IntakeSMTP, session: SMTPSession, envelope: SMTPEnvelope
    ) -> str:
        transaction = server.transaction(envelope)
        message = Envelope(
            mail_from=transaction.mail_from,
            recipients=tuple(dict.fromkeys(transaction.recipients)),  # duplicates once
            client=transaction.session.client,
            received_at=self._clock.now(),
            smtputf8=transaction.smtputf8,
            body_type=transaction.body_type,
            requiretls=transaction.requiretls,
        )
        content = envelope.original_content or b""
        with server.processing():
            # Shielded: if the client disconnects meanwhile, storing still completes
            # and on_queued still runs, rather than leaving a file nobody was told of.
            task = asyncio.create_task(
                self._acceptor.data(message, content, esmtp=session.extended_smtp)
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            reply = await asyncio.shield(task)
        if reply.is_success and server.intake_started is not None:
            metrics.observe_intake_latency(transaction.session.client.listener,
                                           server.loop.time() - server.intake_started)
        server.intake_started = None
        return str(reply)

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, TLSSetupException):
            # A client that cannot do TLS: routine, and aiosmtpd closes the connection.
            log.info("STARTTLS handshake failed: %s", error.__cause__ or error)
        else:
            log.error("unexpected error in an SMTP session", exc_info=error)
        return str(replies.INTERNAL_ERROR)


# -- helpers ------------------------------------------------------------------------------------


def _decoded_credentials(
    server: SMTP, session: SMTPSession, envelope: SMTPEnvelope, mechanism: str, auth_data: object
) -> AuthResult:
    """aiosmtpd's (synchronous) authenticator: only hands the decoded credentials back,
    so that IntakeSMTP._check_credentials can check them without blocking the loop."""
    return AuthResult(success=True, handled=False, auth_data=auth_data)


def _take_requiretls(arg: str | None) -> tuple[str | None, bool]:
    """MAIL's argument without a REQUIRETLS parameter, and whether it had one; only the
    parameters after the path are looked at."""
    if not arg:
        return arg, False
    end = arg.rfind(">")
    path, params = (arg[:end + 1], arg[end + 1:]) if end >= 0 else (arg, "")
    tokens = params.split()
    kept = [t for t in tokens if t.upper() != "REQUIRETLS"]
    if len(kept) == len(tokens):
        return arg, False
    return " ".join([path, *kept]), True


def _server_tls_context(listener: ListenerConfig, config: Config) -> ssl.SSLContext | None:
    if listener.tls == "none":
        return None
    if listener.cert_file is None or listener.key_file is None:
        raise ConfigError([ConfigProblem(str(config.path), 0, 0,
                                         f"listener {listener.name}: tls needs cert and key")])
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        context.load_cert_chain(listener.cert_file, listener.key_file)
    except (OSError, ssl.SSLError) as exc:
        raise ConfigError([ConfigProblem(str(config.path), 0, 0,
                                         f"listener {listener.name}: cannot load "
                                         f"{listener.cert_file}: {exc}")]) from exc
    return context


def _peer(peername: object) -> tuple[str, int]:
    if isinstance(peername, tuple) and len(peername) >= 2:
        return str(peername[0]), int(peername[1])
    return "", 0


# Per connection, and most connections come from a few app servers: parsing the address
# and scanning the networks once per address is enough (bounded).
@functools.lru_cache(maxsize=1024)
def _in_networks(address: str, networks: tuple[IPNetwork, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # a dual-stack socket reports IPv4 clients as ::ffff:a.b.c.d
    return any(ip in network for network in networks)


def _printable(text: str) -> str:
    """HELO names are recorded and put in headers: printable ASCII, bounded."""
    return "".join(ch if "!" <= ch <= "~" else "?" for ch in text[:255])


class _DropDeprecationNoise(logging.Filter):
    # aiosmtpd logs "Session.login_data is deprecated" at WARNING on every AUTH it
    # handles itself; the message is about its own internals, not about us.
    def filter(self, record: logging.LogRecord) -> bool:
        return "login_data is deprecated" not in record.getMessage()


_AIOSMTPD_FILTER = _DropDeprecationNoise()


def _quiet_aiosmtpd() -> None:
    logging.getLogger("mail.log").addFilter(_AIOSMTPD_FILTER)  # idempotent
