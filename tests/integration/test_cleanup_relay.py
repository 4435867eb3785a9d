"""Awkward app messages relayed through the real gateway: each arrives standards-clean,
says what the app wrote, and verifies under Perl's Mail::DKIM (issue 16).

raw socket → gateway (in-process, cleanup + DKIM) → spool → delivery → the raw test
server (tests/fixtures/raw_smtp.py, which keeps the bytes exactly as they came, long
lines included). Every case runs under four signing setups — RSA + Ed25519 (dual)
relaxed/relaxed and simple/simple, RSA alone relaxed/simple, Ed25519 alone
simple/relaxed — with one gateway per setup and all the messages through it.

The messages are our own, written after RFC 5322/2045/2047 and what template engines
and hand-written SMTP code produce: long HTML lines, unwrapped base64, unfoldable
tokens, `Subject :`, stray CR and bare LF, 8-bit bodies, missing and duplicate
fields, and messages the app signed itself (whose bytes must arrive unchanged).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from email.header import decode_header, make_header
from email.message import Message
from pathlib import Path

import dkim
import pytest

from tests.fixtures.dkim import KeySet, dkim_section, send_raw, verify_perl
from tests.fixtures.dns import NsdServer, running_nsd
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.raw_smtp import RawSmtpServer, Transcript

HEAD = (b"From: Booking <app@example.com>\r\nTo: guest@example.net\r\n"
        b"Subject: Your booking\r\nMessage-ID: <booking-42@example.com>\r\n"
        b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n")
MIME = b"MIME-Version: 1.0\r\n"
HTML = (b"<html><body><table>" + b"".join(
    b'<tr><td class="c%d">Room %d</td><td>Breakfast included</td></tr>' % (i, i)
    for i in range(60)) + b"</table></body></html>")  # one line, ~3.8 kB: a template's
HTML_8BIT = HTML.replace(b"Breakfast", "Frühstück".encode())
PDF = bytes(range(256)) * 12
B64_ONE_LINE = __import__("base64").b64encode(PDF)  # an app that did not wrap its base64
WORDS = b" ".join(b"word%d" % i for i in range(300))  # ~2.4 kB of words
TOKEN = b"T" + b"0123456789abcdef" * 80  # 1.3 kB without white space


@dataclass(frozen=True)
class Case:
    name: str
    make: Callable[[KeySet], bytes]  # the bytes the app sends (before dot-stuffing)
    check: Callable[[bytes, bytes], None]  # (what arrived after our fields, what was sent)
    reply: str = "250"
    smtputf8: bool = False
    body_8bit: bool = False
    app_signed: bool = False

    @property
    def rcpt(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.name.lower()).strip("-") + "@example.net"


# -- what arrived ----------------------------------------------------------------------------


def parsed(message: bytes) -> Message:
    return email.message_from_bytes(message, policy=email.policy.compat32)


def leaves(message: bytes) -> list[Message]:
    return [p for p in parsed(message).walk() if not p.is_multipart()]


def decoded(message: bytes, index: int = 0) -> bytes:
    payload = leaves(message)[index].get_payload(decode=True)
    assert isinstance(payload, bytes)
    return payload


def encoding(message: bytes, index: int = 0) -> str:
    return str(leaves(message)[index].get("content-transfer-encoding", "7bit")).lower()


def header_of(message: bytes) -> bytes:
    return message[:message.index(b"\r\n\r\n") + 2]


def body_of(message: bytes) -> bytes:
    return message[message.index(b"\r\n\r\n") + 4:]


def field_values(message: bytes, name: str) -> list[str]:
    return [str(v) for v in parsed(message).get_all(name) or []]


def unfolded(message: bytes, name: str) -> bytes:
    match = re.search(rb"(?im)^" + name.encode() + rb":((?:[^\r\n]*\r\n[ \t])*[^\r\n]*)",
                      header_of(message))
    assert match is not None, name
    return re.sub(rb"\r\n(?=[ \t])", b"", match.group(1))


def text_of(value: str) -> str:
    return str(make_header(decode_header(value)))


# -- the checks ------------------------------------------------------------------------------


def unchanged(got: bytes, sent: bytes) -> None:
    assert got == sent


def reencoded_as(cte: str, content: bytes, index: int = 0) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        assert encoding(got, index) == cte
        assert decoded(got, index) == content  # exactly what the app wrote
    return check


def holds(predicate: Callable[[bytes, bytes], bool]) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        assert predicate(got, sent)
    return check


def has_field(line: bytes, *, absent: bytes | None = None) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        assert b"\r\n" + line + b"\r\n" in b"\r\n" + header_of(got)
        if absent is not None:
            assert absent not in got
    return check


def refused_naming(field: str) -> str:
    return f"554 5.6.0 Message refused: its {field}: field"


def folded_keeps(name: str, value: bytes) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        assert unfolded(got, name).strip() == value.strip()  # folding never changes it
        assert body_of(got) == body_of(sent)
    return check


def encoded_keeps(name: str, text: str) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        (value,) = field_values(got, name)
        assert "=?utf-8?" in value and text_of(value) == text
    return check


def added(name: str, pattern: str) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        (value,) = field_values(got, name)
        assert re.fullmatch(pattern, value.strip()), value
        assert got.endswith(body_of(sent))
    return check


def all_of(*checks: Callable[[bytes, bytes], None]) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        for one in checks:
            one(got, sent)
    return check


def one_each(*names: str) -> Callable[[bytes, bytes], None]:
    def check(got: bytes, sent: bytes) -> None:
        for name in names:
            assert len(field_values(got, name)) == 1, name
    return check


def app_signed(message: bytes, keys: KeySet, canonicalization: bytes = b"simple/simple",
               headers: tuple[bytes, ...] = (b"from", b"to", b"subject", b"date",
                                             b"message-id")) -> bytes:
    """`message` signed the way an app that signs itself would (d=app.example)."""
    key = keys[("app.example", "app1")]
    header, body = canonicalization.split(b"/")
    signature: bytes = dkim.sign(message, b"app1", b"app.example", key.key.material,
                                 canonicalize=(header, body), include_headers=list(headers),
                                 linesep=b"\r\n")
    return signature + message


def alternative(plain: bytes, html: bytes, html_cte: bytes = b"8bit") -> bytes:
    return (HEAD + MIME + b'Content-Type: multipart/alternative; boundary="alt"\r\n\r\n'
            b"--alt\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n" + plain + b"\r\n"
            b"--alt\r\nContent-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: "
            + html_cte + b"\r\n\r\n" + html + b"\r\n--alt--\r\n")


def fixed(data: bytes) -> Callable[[KeySet], bytes]:
    return lambda keys: data


SIGNED_LONG = HEAD + MIME + (b"Content-Type: text/html; charset=utf-8\r\n"
                             b"Content-Transfer-Encoding: 8bit\r\n\r\n") + HTML_8BIT + b"\r\n"

CASES = [
    Case("ordinary", fixed(HEAD + b"\r\nSee you soon.\r\n"), unchanged),
    Case("long html line", fixed(HEAD + MIME + b"Content-Type: text/html; charset=us-ascii\r\n"
                                 b"\r\n" + HTML + b"\r\n"),
         reencoded_as("quoted-printable", HTML + b"\r\n")),
    Case("long html in multipart/alternative", fixed(alternative(b"Your room is ready.", HTML)),
         all_of(reencoded_as("quoted-printable", HTML, 1),
                holds(lambda got, sent: decoded(got, 0) == b"Your room is ready."))),
    Case("long plain 7bit line", fixed(HEAD + MIME + b"Content-Type: text/plain\r\n"
                                       b"Content-Transfer-Encoding: 7bit\r\n\r\n"
                                       + WORDS + b"\r\nbye\r\n"),
         reencoded_as("quoted-printable", WORDS + b"\r\nbye\r\n")),
    Case("unwrapped base64 attachment", fixed(
        HEAD + MIME + b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        b"Content-Type: text/plain\r\n\r\nInvoice attached.\r\n--m\r\n"
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + B64_ONE_LINE + b"\r\n--m--\r\n"), reencoded_as("base64", PDF, 1)),
    Case("long attachment file name", fixed(
        HEAD + MIME + b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        b"Content-Type: text/plain\r\n\r\nSee attached.\r\n--m\r\n"
        b'Content-Type: application/pdf\r\nContent-Disposition: attachment; filename="'
        + WORDS + b'.pdf"\r\nContent-Transfer-Encoding: base64\r\n\r\nAAAA\r\n--m--\r\n'),
        holds(lambda got, sent: " ".join(str(leaves(got)[1].get_filename()).split())
              == WORDS.decode() + ".pdf" and decoded(got, 1) == bytes(3))),
    Case("long json attachment in 7bit", fixed(
        HEAD + MIME + b'Content-Type: multipart/mixed; boundary="m"\r\n\r\n--m\r\n'
        b"Content-Type: text/plain\r\n\r\nData attached.\r\n--m\r\n"
        b"Content-Type: application/json\r\n\r\n[" + b'"x",' * 400 + b'"y"]\r\n--m--\r\n'),
        reencoded_as("base64", b"[" + b'"x",' * 400 + b'"y"]', 1)),
    Case("quoted-printable without soft breaks", fixed(
        HEAD + MIME + b"Content-Type: text/html\r\nContent-Transfer-Encoding: quoted-printable"
        b"\r\n\r\n" + HTML.replace(b'="', b'=3D"') + b"\r\n"),
        reencoded_as("quoted-printable", HTML + b"\r\n")),
    Case("8-bit utf-8 body without MIME fields",
         fixed(HEAD + "\r\nSchöne Grüße aus Köln — 👋\r\n".encode()),
         all_of(reencoded_as("quoted-printable", "Schöne Grüße aus Köln — 👋\r\n".encode()),
                has_field(b"Content-Type: text/plain; charset=utf-8")), body_8bit=True),
    Case("8-bit latin-1 body", fixed(
        HEAD + MIME + b"Content-Type: text/plain; charset=iso-8859-1\r\n"
        b"Content-Transfer-Encoding: 8bit\r\n\r\nCaf\xe9 cr\xe8me, d\xe9j\xe0 vu\r\n"),
        reencoded_as("quoted-printable", b"Caf\xe9 cr\xe8me, d\xe9j\xe0 vu\r\n"),
        body_8bit=True),
    Case("8-bit multipart", fixed(alternative("Grüße".encode(), "<p>Grüße</p>".encode())),
         all_of(reencoded_as("quoted-printable", "Grüße".encode(), 0),
                reencoded_as("quoted-printable", "<p>Grüße</p>".encode(), 1)), body_8bit=True),
    Case("8-bit long html", fixed(alternative(b"plain", HTML_8BIT)),
         reencoded_as("quoted-printable", HTML_8BIT, 1), body_8bit=True),
    Case("obsolete Subject :", fixed(HEAD.replace(b"Subject:", b"Subject :") + b"\r\nHi\r\n"),
         has_field(b"Subject: Your booking", absent=b"Subject :")),
    Case("obsolete From : (dkimpy would lose it)",
         fixed(HEAD.replace(b"From:", b"From  :") + b"\r\nHi\r\n"),
         has_field(b"From: Booking <app@example.com>", absent=b"From  :")),
    Case("obsolete white-space-only fold", fixed(
        HEAD.replace(b"Subject: Your booking", b"Subject: Your\r\n   \r\n booking")
        + b"X-Mailer\t: handmade 1.0\r\n\r\nHi\r\n"),
        all_of(has_field(b"X-Mailer: handmade 1.0"),
               holds(lambda got, sent: field_values(got, "Subject")[0].split()
                     == ["Your", "booking"]))),
    Case("no Date", fixed(HEAD.replace(b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n", b"")
                          + b"\r\nHi\r\n"),
         added("Date", r"\w{3}, \d{1,2} \w{3} \d{4} \d\d:\d\d:\d\d [+-]\d{4}")),
    Case("no Message-ID", fixed(HEAD.replace(b"Message-ID: <booking-42@example.com>\r\n", b"")
                                + b"\r\nHi\r\n"),
         added("Message-ID", r"<[0-9a-f]{32}@gateway\.test>")),
    Case("no From, Date or Message-ID", fixed(b"To: guest@example.net\r\nSubject: x\r\n\r\nHi\r\n"),
         all_of(added("From", r"app@example\.com"), one_each("Date", "Message-ID"))),
    Case("body without header section", fixed(b"Just a line of text.\r\nAnd another.\r\n"),
         all_of(one_each("From", "Date", "Message-ID"),
                holds(lambda got, sent: body_of(got) == sent))),
    Case("header without the empty line", fixed(HEAD + b"Dear guest,\r\nwelcome.\r\n"),
         holds(lambda got, sent: body_of(got) == b"Dear guest,\r\nwelcome.\r\n")),
    Case("same Subject twice", fixed(HEAD + b"Subject: Your booking\r\n\r\nHi\r\n"),
         one_each("Subject")),
    Case("same Date and MIME-Version twice", fixed(
        HEAD + MIME + b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n" + MIME + b"\r\nHi\r\n"),
        one_each("Date", "MIME-Version")),
    Case("different Subjects", fixed(HEAD + b"Subject: Your cancellation\r\n\r\nHi\r\n"),
         unchanged, reply="554 5.6.0 Message refused: it has 2 Subject: fields"),
    Case("different From fields", fixed(HEAD + b"From: ceo@example.com\r\n\r\nHi\r\n"),
         unchanged, reply="554 5.6.0 Message refused: it has 2 From: fields"),
    Case("long Subject of words", fixed(
        HEAD.replace(b"Subject: Your booking", b"Subject: " + WORDS) + b"\r\nHi\r\n"),
        folded_keeps("Subject", WORDS)),
    Case("long Subject without white space", fixed(
        HEAD.replace(b"Subject: Your booking", b"Subject: " + TOKEN) + b"\r\nHi\r\n"),
        encoded_keeps("Subject", TOKEN.decode())),
    Case("long X- token", fixed(HEAD + b"X-Campaign: " + TOKEN + b"\r\n\r\nHi\r\n"),
         encoded_keeps("X-Campaign", TOKEN.decode())),
    Case("long References", fixed(HEAD + b"References: " + b" ".join(
        b"<thread-%d@example.com>" % i for i in range(80)) + b"\r\n\r\nHi\r\n"),
        folded_keeps("References", b" ".join(b"<thread-%d@example.com>" % i for i in range(80)))),
    Case("long To list", fixed(HEAD.replace(b"To: guest@example.net", b"To: " + b", ".join(
        b"Guest %d <guest%d@example.net>" % (i, i) for i in range(60))) + b"\r\nHi\r\n"),
        folded_keeps("To", b", ".join(b"Guest %d <guest%d@example.net>" % (i, i)
                                      for i in range(60)))),
    Case("unfoldable List-Unsubscribe", fixed(
        HEAD + b"List-Unsubscribe: <https://example.com/u/" + TOKEN + b">\r\n\r\nHi\r\n"),
        unchanged, reply=refused_naming("List-Unsubscribe")),
    Case("8-bit Subject without SMTPUTF8", fixed(
        HEAD.replace(b"Your booking", "Ihre Buchung in Köln".encode()) + b"\r\nHi\r\n"),
        encoded_keeps("Subject", "Ihre Buchung in Köln")),
    Case("SMTPUTF8 header fields", fixed(
        HEAD.replace(b"Your booking", "Ihre Buchung in Köln".encode())
        .replace(b"From: Booking", "From: Büro".encode()) + b"\r\nHi\r\n"),
        unchanged, smtputf8=True),
    Case("bare LF line endings", fixed(
        HEAD.replace(b"\r\n", b"\n") + b"\nline one\nline two\r\n"),
        holds(lambda got, sent: got == HEAD + b"\r\nline one\r\nline two\r\n")),
    Case("stray CR inside a line", fixed(HEAD + b"\r\nTotal:\r42 EUR\r\n"),
         holds(lambda got, sent: got == HEAD + b"\r\nTotal: 42 EUR\r\n")),
    Case("CR CR LF line endings", fixed(
        HEAD.replace(b"\r\n", b"\r\r\n") + b"\r\r\nline one\r\r\nline two\r\r\n"),
        holds(lambda got, sent: got == HEAD + b"\r\nline one\r\nline two\r\n")),
    Case("LF header, long 8-bit html", fixed(
        (HEAD + MIME + b"Content-Type: text/html; charset=utf-8\r\n\r\n").replace(b"\r\n", b"\n")
        + HTML_8BIT + b"\r\n"),
        reencoded_as("quoted-printable", HTML_8BIT + b"\r\n"), body_8bit=True),
    Case("dot lines and a long line", fixed(
        HEAD + b"\r\n.\r\n..two dots\r\n" + WORDS + b"\r\n.\r\n"),
        reencoded_as("quoted-printable", b".\r\n..two dots\r\n" + WORDS + b"\r\n.\r\n")),
    Case("trailing white space and a long line", fixed(
        HEAD + b"\r\nkeep   \r\n\ttabbed\t\r\n" + WORDS + b" \r\n"),
        reencoded_as("quoted-printable", b"keep   \r\n\ttabbed\t\r\n" + WORDS + b" \r\n")),
    Case("a line of exactly 998 octets", fixed(HEAD + b"\r\n" + b"x" * 998 + b"\r\n"), unchanged),
    Case("empty body", fixed(HEAD + b"\r\n"), unchanged),
    Case("app-signed, 8-bit with a long line", lambda keys: app_signed(SIGNED_LONG, keys),
         unchanged, app_signed=True, body_8bit=True),
    # Signed, then `Subject :` (relaxed canonicalization does not see that space; dkimpy
    # cannot parse it, so the app's signer here signs first).
    Case("app-signed relaxed, Subject :", lambda keys: app_signed(
        HEAD + b"\r\nHi\r\n", keys, b"relaxed/relaxed").replace(b"\nSubject:", b"\nSubject :"),
        has_field(b"Subject: Your booking", absent=b"Subject :"), app_signed=True),
    Case("app-signed without Date, which h= names", lambda keys: app_signed(
        HEAD.replace(b"Date: Tue, 14 Nov 2023 22:13:20 +0000\r\n", b"")
        .replace(b"Message-ID: <booking-42@example.com>\r\n", b"") + b"\r\nHi\r\n", keys,
        headers=(b"from", b"to", b"subject", b"date")),
        all_of(holds(lambda got, sent: field_values(got, "Date") == []),
               added("Message-ID", r"<[0-9a-f]{32}@gateway\.test>")), app_signed=True),
    Case("app-signed with a long header line", lambda keys: app_signed(
        HEAD + b"X-Data: " + TOKEN + b"\r\n\r\nHi\r\n", keys), unchanged, app_signed=True),
]
SETUPS: dict[str, tuple[tuple[str, ...], dict[str, object]]] = {
    "dual relaxed": (("rsa1", "ed1"), {"dual_sign": True, "canonicalization": "relaxed/relaxed"}),
    "dual simple": (("rsa1", "ed1"), {"dual_sign": True, "canonicalization": "simple/simple"}),
    "rsa relaxed-simple": (("rsa1",), {"canonicalization": "relaxed/simple"}),
    "ed25519 simple-relaxed": (("ed1",), {"canonicalization": "simple/relaxed"}),
}


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeySet:
    keys = KeySet(tmp_path_factory.mktemp("dkim-keys"))
    keys.add("example.com", "rsa1", "rsa")
    keys.add("example.com", "ed1", "ed25519")
    keys.add("app.example", "app1", "rsa")  # the app's own key (app-signed cases)
    return keys


@pytest.fixture(scope="module")
def nsd(keys: KeySet, tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsdServer]:
    with running_nsd(tmp_path_factory.mktemp("nsd"), keys.zones()) as server:
        yield server


@dataclass
class Relayed:
    sent: dict[str, bytes]
    replies: dict[str, str]
    arrived: dict[str, tuple[bytes, bytes]]  # rcpt → (MAIL FROM line, message)
    selectors: tuple[str, ...]


@pytest.fixture(scope="module", params=list(SETUPS))
def relayed(request: pytest.FixtureRequest, keys: KeySet, nsd: NsdServer,
            tmp_path_factory: pytest.TempPathFactory) -> Relayed:
    active, options = SETUPS[request.param]
    section = dkim_section(keys, active, **options)
    directory = tmp_path_factory.mktemp("gw")
    sent = {case.rcpt: case.make(keys) for case in CASES}
    replies, arrived = asyncio.run(relay_all(directory, section, sent))
    return Relayed(sent, replies, arrived, active)


async def relay_all(directory: Path, section: str, sent: dict[str, bytes]
                    ) -> tuple[dict[str, str], dict[str, tuple[bytes, bytes]]]:
    async with RawSmtpServer() as server:
        config = write_config(directory, server.port, extra=section)
        async with running_gateway(config) as gw:
            replies = {}
            for case in CASES:
                replies[case.rcpt] = await asyncio.to_thread(
                    send, gw.ports["relay"], case, sent[case.rcpt])
            expected = sum(r.startswith("250") for r in replies.values())
            deadline = time.monotonic() + 60
            while len(server.messages()) < expected and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            return replies, by_recipient(server.transcripts)


def send(port: int, case: Case, data: bytes) -> str:
    """One transaction on a plain socket: `data` dot-stuffed, nothing else changed."""
    return send_raw(port, re.sub(rb"(^|\n)\.", rb"\1..", data), rcpt=case.rcpt,
                    body_8bit=case.body_8bit, smtputf8=case.smtputf8)


def by_recipient(transcripts: list[Transcript]) -> dict[str, tuple[bytes, bytes]]:
    """Each relayed message by its recipient, with its MAIL FROM line, dot-unstuffed."""
    out = {}
    for transcript in transcripts:
        messages = iter(transcript.messages)
        mail, rcpts = b"", list[str]()
        for line in transcript.commands:
            verb = line[:4].upper()
            if verb == b"MAIL":
                mail, rcpts = line, []
            elif verb == b"RCPT":
                rcpts.append(line[9:].strip().strip(b"<>").decode())
            elif verb == b"DATA":
                content = next(messages)[:-3]  # the final ".\r\n"
                content = re.sub(rb"(^|\r\n)\.", rb"\1", content)
                out.update({rcpt: (mail, content) for rcpt in rcpts})
    return out


def after_our_fields(message: bytes) -> bytes:
    """The message as cleanup left it: without our DKIM-Signature and Received fields."""
    pos = 0
    for name in (b"dkim-signature:", b"dkim-signature:", b"received:"):
        if message[pos:pos + len(name)].lower() != name:
            continue
        end = message.index(b"\r\n", pos)
        while message[end + 2:end + 3] in (b" ", b"\t"):
            end = message.index(b"\r\n", end + 2)
        pos = end + 2
        if name == b"received:":
            break
    return message[pos:]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_awkward_message_arrives_clean_and_verified(relayed: Relayed, nsd: NsdServer,
                                                    case: Case) -> None:
    reply = relayed.replies[case.rcpt]
    assert reply.startswith(case.reply), reply
    if not case.reply.startswith("250"):
        assert case.rcpt not in relayed.arrived  # refused: nothing relayed
        return
    mail, message = relayed.arrived[case.rcpt]
    got = after_our_fields(message)
    sent = relayed.sent[case.rcpt]
    case.check(got, sent)
    if not case.app_signed:
        assert max(map(len, message.split(b"\r\n"))) <= 998  # RFC 5322 2.1.1
        assert message.isascii() or case.smtputf8  # 7-bit unless UTF-8 headers are the point
    assert not re.search(rb"\r(?!\n)|(?<!\r)\n", message)
    assert (b" SMTPUTF8" in mail) == case.smtputf8
    results = verify_perl(message, nsd)
    ours = [r for r in results if r.domain == "example.com"]
    assert [(r.result, r.selector) for r in ours] == [("pass", s) for s in relayed.selectors], \
        results
    if case.app_signed:  # the app's own signature still verifies too
        assert [(r.result, r.domain) for r in results if r.domain == "app.example"] == [
            ("pass", "app.example")], results
