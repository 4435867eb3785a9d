"""Consent over real SMTP: category by header and by rule, grants and withdrawals,
dropped recipients, the category header removed, List-Unsubscribe added with a
token that verifies."""

from __future__ import annotations

import re
from pathlib import Path

from gateway.model import ConsentRecord, EventType
from gateway.policy.unsubscribe_token import TokenSigner, UnsubscribeRequest
from tests.fixtures.gateway import running_gateway, write_config
from tests.fixtures.policy import events_of_type, message, smtp_session, write_policy
from tests.fixtures.sink import Sink

KEY = b"0123456789abcdef0123456789abcdef-test"
CONSENT = """\
    categories:
      transactional: {basis: contract}
      marketing: {basis: consent}
    rules:
      - name: newsletter-domain
        category: marketing
        sender_domain: [news.example.com]
    unsubscribe:
      base_url: https://gw.example/unsubscribe
      secret_file: unsubscribe.key
    """


def setup(tmp_path: Path, consent: str = CONSENT) -> None:
    write_policy(tmp_path, "consent.yaml", consent)
    (tmp_path / "policies" / "unsubscribe.key").write_bytes(KEY)
    (tmp_path / "policies" / "unsubscribe.key").chmod(0o600)  # others may not read a secret


async def grant(gw: object, address: str, granted: bool = True, time: float = 1.0) -> None:
    await gw.state.consent.record(  # type: ignore[attr-defined]
        [ConsentRecord(address, "marketing", granted, time, "explicit", "booking form")],
        "test", time)


async def test_marketing_by_header_needs_a_grant(tmp_path: Path) -> None:
    setup(tmp_path)
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            refused = await smtp_session(port, ["nobody@example.net"], message("marketing"))
            assert refused.data == (550, "5.7.1 No consent recorded for marketing mail")
            await grant(gw, "fan@example.net")
            await grant(gw, "ex-fan@example.net", True, 1.0)
            await grant(gw, "ex-fan@example.net", False, 2.0)
            mixed = await smtp_session(
                port, ["fan@example.net", "ex-fan@example.net", "nobody@example.net"],
                message("marketing"))
            assert mixed.data is not None and mixed.data[0] == 250, mixed
            queue_id = mixed.data[1].rsplit(" ", 1)[1]
            (got,) = await sink.await_for(1)
            assert got.rcpt_tos == ["fan@example.net"]
            assert b"X-Gateway-Category" not in got.data
            m = re.search(rb"List-Unsubscribe: <https://gw\.example/unsubscribe\?token=([^>]+)>",
                          got.data)
            assert m, got.data
            assert b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n" in got.data
            assert TokenSigner(KEY).verify(m.group(1).decode()) == UnsubscribeRequest(
                "fan@example.net", "marketing")
            dropped = await events_of_type(gw, queue_id, EventType.DROPPED, 2)
            assert {(e.recipient, e.detail) for e in dropped} == {
                ("ex-fan@example.net", "rule=consent:marketing:withdrawn category=marketing"),
                ("nobody@example.net", "rule=consent:marketing:none category=marketing")}
    finally:
        sink.stop()


async def test_category_by_rule_and_transactional_default(tmp_path: Path) -> None:
    setup(tmp_path)
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            port = gw.ports["relay"]
            by_rule = await smtp_session(port, ["nobody@example.net"],
                                         message(sender="offers@news.example.com"),
                                         sender="offers@news.example.com")
            assert by_rule.data == (550, "5.7.1 No consent recorded for marketing mail")
            # The header wins over the rules; with no header and no rule: transactional.
            receipt = await smtp_session(port, ["nobody@example.net"],
                                         message("transactional",
                                                 sender="offers@news.example.com"),
                                         sender="offers@news.example.com")
            assert receipt.data is not None and receipt.data[0] == 250
            plain = await smtp_session(port, ["nobody@example.net"], message())
            assert plain.data is not None and plain.data[0] == 250
            got = await sink.await_for(2)
            assert all(b"List-Unsubscribe" not in m.data for m in got)
    finally:
        sink.stop()


async def test_one_copy_per_recipient_each_with_its_token(tmp_path: Path) -> None:
    setup(tmp_path, CONSENT + "keep_header: true\n")
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            for address in ("a@example.net", "b@example.net"):
                await grant(gw, address)
            result = await smtp_session(gw.ports["relay"], ["a@example.net", "b@example.net"],
                                        message("marketing"))
            assert result.data is not None and result.data[0] == 250
            got = sorted(await sink.await_for(2), key=lambda m: m.rcpt_tos)
            signer = TokenSigner(KEY)
            for m, address in zip(got, ("a@example.net", "b@example.net"), strict=True):
                assert m.rcpt_tos == [address]
                assert b"X-Gateway-Category: marketing" in m.data  # keep_header: true
                token = re.search(rb"token=([^>]+)>", m.data)
                assert token and signer.verify(token.group(1).decode()) == UnsubscribeRequest(
                    address, "marketing")
    finally:
        sink.stop()


async def test_existing_list_unsubscribe_is_kept(tmp_path: Path) -> None:
    setup(tmp_path)
    sink = Sink().start()
    try:
        async with running_gateway(write_config(tmp_path, sink.port)) as gw:
            await grant(gw, "a@example.net")
            own = "List-Unsubscribe: <mailto:unsub@example.com>\r\n"
            result = await smtp_session(gw.ports["relay"], ["a@example.net"],
                                        message("marketing", extra=own))
            assert result.data is not None and result.data[0] == 250
            (got,) = await sink.await_for(1)
            assert got.data.count(b"List-Unsubscribe:") == 1
            assert own.encode() in got.data
    finally:
        sink.stop()
