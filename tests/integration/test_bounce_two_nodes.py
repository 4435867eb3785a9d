"""Bounce ingestion by two nodes sharing the state database (issue 8): one returned
message fetched by both nodes — one after the other, or at the same moment — is
processed and counted once; with the database away it stays in the mailbox and is
processed once the database is back. Real PostgreSQL (and, for the "nodes" of
one machine, the same on SQLite files shared by two processes' stores)."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from gateway.bounces.actions import BounceActions
from gateway.bounces.ingest import BUSY, BounceProcessor
from gateway.bounces.maildir import Maildir, MaildirIngester
from gateway.clock import ManualClock
from gateway.errors import StateUnavailable
from gateway.model import Client, Envelope, EventType, QueuedMessage, Secret
from gateway.policy.rules_file import PolicySet, load_policies
from gateway.state.bounces import Ledger
from gateway.state.events import accepted_events
from gateway.state.settings import StateConfig
from gateway.state.store import StateStore
from tests.fixtures.backends import pg_database, pg_dsn, sqlite_or_pg_state_config
from tests.fixtures.bounces import bounce_config, dsn_text
from tests.fixtures.gateway import running_gateway
from tests.fixtures.net import free_port
from tests.fixtures.policy import smtp_session
from tests.fixtures.sink import Sink
from tests.fixtures.tcp_proxy import TcpProxy

__all__ = ["pg_database", "pg_dsn"]  # fixtures, imported for pytest


@dataclass
class Node:
    state: StateStore
    processor: BounceProcessor


def _policies(directory: Path) -> PolicySet:
    directory.mkdir(exist_ok=True)
    (directory / "bounces.yaml").write_text("{}\n")
    policies = load_policies(directory)
    assert policies is not None
    return policies


async def _node(path: Path, config: StateConfig, policies: PolicySet) -> Node:
    state = StateStore(path, config)
    await state.open()
    actions = BounceActions(state, state.bounces, ManualClock(), policies=policies)
    return Node(state, BounceProcessor(actions, state.bounces, None))


@pytest.fixture(params=["postgresql", "sqlite"])
async def nodes(request: pytest.FixtureRequest, tmp_path: Path
                ) -> AsyncIterator[tuple[Node, Node]]:
    dsn = request.getfixturevalue("pg_dsn") if request.param == "postgresql" else None
    config = sqlite_or_pg_state_config(request.param, dsn)
    policies = _policies(tmp_path / "policies")
    a = await _node(tmp_path / "state.db", config, policies)
    b = await _node(tmp_path / "state.db", config, policies)
    yield a, b
    for node in (a, b):
        await node.state.close()


async def _sent(node: Node, queue_id: str, rcpt: str) -> bytes:
    """Record that `queue_id` went to `rcpt` (on this node, visible to both), and return
    its bounce."""
    qm = QueuedMessage(queue_id, Envelope("app@example.com", (rcpt,),
                                          Client("relay", "127.0.0.1"), 1.0,
                                          message_id=f"<{queue_id}@example.com>"), 10)
    node.state.events.record(accepted_events(qm, 1.0))
    await node.state.events.flush()
    return dsn_text("app@example.com", rcpt, "5.1.1", f"<{queue_id}@example.com>").encode()


async def _bounced(node: Node, queue_id: str) -> int:
    events = await node.state.events.by_queue_id(queue_id)
    return sum(e.type is EventType.BOUNCED for e in events)


async def test_a_bounce_fetched_by_both_nodes_counts_once(nodes: tuple[Node, Node]) -> None:
    a, b = nodes
    # One after the other: B fetched the message before A moved it out of the folder.
    dsn = await _sent(a, "01HF7YAT00AAAAAAAAAA", "gone@example.net")
    assert await a.processor.process(dsn, "imap", "imap:box:7:1") == "processed"
    assert await b.processor.process(dsn, "imap", "imap:box:7:1") == "duplicate"
    assert await _bounced(b, "01HF7YAT00AAAAAAAAAA") == 1
    assert [s.target for s in await b.state.suppressions.all()] == ["gone@example.net"]
    # At the same moment: one processes it; the other skips it (or leaves it, BUSY).
    dsn = await _sent(a, "01HF7YAT00BBBBBBBBBB", "left@example.net")
    outcomes = await asyncio.gather(a.processor.process(dsn, "imap", "imap:box:7:2"),
                                    b.processor.process(dsn, "imap", "imap:box:7:2"))
    assert sorted(outcomes) in (["busy", "processed"], ["duplicate", "processed"])
    assert await _bounced(a, "01HF7YAT00BBBBBBBBBB") == 1
    counted = [n.processor.counters for n in nodes]
    assert sum(c.processed for c in counted) == 2 and sum(c.hard for c in counted) == 2
    assert [k for k, _, _ in await a.state.bounces.ingested()] == ["imap:box:7:1",
                                                                   "imap:box:7:2"]


async def test_a_message_another_node_is_processing_stays_in_the_maildir(
        nodes: tuple[Node, Node], tmp_path: Path) -> None:
    a, b = nodes
    maildir = Maildir(tmp_path / "shared-maildir", fsync=False)
    maildir.create()
    name = maildir.deliver(await _sent(a, "01HF7YAT00CCCCCCCCCC", "x@example.net"))
    # Node B has claimed it and is still working on it (or died doing so).
    now = b.processor.actions.clock.now()
    assert await b.state.bounces.claim(f"maildir:{name}", "maildir", now, 300) is Ledger.CLAIMED
    ingester = MaildirIngester(maildir, a.processor, "maildir", 60.0)
    assert await ingester.run_once() == 0
    assert os.listdir(maildir.path / "new") == [name]  # left for B to finish and move
    assert a.processor.counters.processed == 0 and a.processor.counters.errors == 0
    assert await a.processor.process(b"", "maildir", f"maildir:{name}") == BUSY


def _through(dsn: str, port: int) -> str:
    parts = urlsplit(dsn)
    return f"postgresql://postgres@127.0.0.1:{port}{parts.path}"


async def test_database_away_the_bounce_waits_in_the_mailbox(tmp_path: Path, pg_dsn: str
                                                              ) -> None:
    database = TcpProxy(5432).start()
    node = await _node(tmp_path / "state.db",
                       StateConfig(dsn=Secret(_through(pg_dsn, database.port))),
                       _policies(tmp_path / "policies"))
    try:
        dsn = await _sent(node, "01HF7YAT00DDDDDDDDDD", "away@example.net")
        maildir = Maildir(tmp_path / "bounce-mail", fsync=False)
        maildir.create()
        name = maildir.deliver(dsn)
        database.cut()
        ingester = MaildirIngester(maildir, node.processor, "maildir", 60.0)
        with pytest.raises(StateUnavailable):
            await node.processor.process(dsn, "maildir", f"maildir:{name}")
        assert await ingester.run_once() == 0  # the claim fails: nothing done, nothing lost
        assert os.listdir(maildir.path / "new") == [name]
        database.start()
        deadline = time.monotonic() + 30
        while await ingester.run_once() == 0:  # the pool's backoff ends, it reconnects
            assert time.monotonic() < deadline
            await asyncio.sleep(0.1)
        assert os.listdir(maildir.path / "new") == []
        assert await _bounced(node, "01HF7YAT00DDDDDDDDDD") == 1
        assert node.processor.counters.processed == 1
        assert await node.state.bounces.ingested() == [(f"maildir:{name}", "maildir",
                                                        "processed")]
    finally:
        await node.state.close()
        database.cut()


async def test_a_node_with_bounce_pollers_starts_with_the_database_away(
        tmp_path: Path, pg_dsn: str) -> None:
    # Its queue must go out; the pollers retry the ledger by themselves.
    sink = Sink().start()
    maildir = Maildir(tmp_path / "bounce-mail", fsync=False)
    maildir.create()
    name = maildir.deliver(b"From: x@example.net\r\nSubject: a bounce\r\n\r\nbody\r\n")
    config = bounce_config(tmp_path, sink.port, bounces_extra="maildir: bounce-mail\n")
    config.write_text(config.read_text() + f"state: {_through(pg_dsn, free_port())}\n")
    try:
        async with running_gateway(config) as gw:
            sent = await smtp_session(gw.ports["relay"], ["guest@example.net"])
            assert sent.rcpt["guest@example.net"][0] == 451  # serving, and failing closed
            assert gw.bounces.counters.processed == 0
            assert os.listdir(maildir.path / "new") == [name]
    finally:
        sink.stop()
