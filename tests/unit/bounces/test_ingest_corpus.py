"""The whole corpus through the processor (as `bounce ingest --apply` runs it): no
message makes it fail; bounces about mail this gateway never sent change nothing.
And a full mailbox that a report calls a final failure still counts as soft."""

from __future__ import annotations

import json
from pathlib import Path

from gateway.bounces.actions import BounceActions
from gateway.bounces.files import ingest_files
from gateway.bounces.ingest import BounceProcessor
from gateway.clock import ManualClock
from gateway.config import load_config
from gateway.model import Client, Envelope, EventType, QueuedMessage
from gateway.policy.rules_file import load_policies
from gateway.state.bounces import SqliteBounceStore
from gateway.state.events import accepted_events
from gateway.state.store import StateStore
from tests.fixtures.bounces import dsn_text

DATA = Path(__file__).resolve().parents[2] / "data" / "bounces"


async def test_corpus_outcomes(tmp_path: Path) -> None:
    (tmp_path / "policies").mkdir()
    (tmp_path / "policies" / "bounces.yaml").write_text("{}\n")
    path = tmp_path / "config.yaml"
    path.write_text("listeners:\n  - name: relay\n    networks: [127.0.0.0/8]\n")
    files = sorted(DATA.glob("*.eml"))
    assert len(files) >= 80
    lines = await ingest_files(load_config(path), files)
    expected = []
    for eml in files:
        bounce = json.loads(eml.with_suffix(".json").read_text())["bounce"]
        expected.append("unmatched" if bounce else "not_bounce")
    assert [line.get("outcome", line.get("error")) for line in lines] == expected
    again = await ingest_files(load_config(path), files[:3])
    assert [line["outcome"] for line in again] == ["duplicate"] * 3


async def test_full_mailbox_reported_as_failed_counts_as_soft(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "bounces.yaml").write_text("{}\n")
    state = StateStore(tmp_path / "state.db")
    await state.open()
    store = SqliteBounceStore(tmp_path / "bounces.db")
    try:
        qm = QueuedMessage("01HF7YAT00GHXCJX9Q", Envelope(
            "app@example.com", ("full@example.net",), Client("relay", "127.0.0.1"), 1.0,
            message_id="<m1@example.com>"), 10)
        state.events.record(accepted_events(qm, 1.0))
        actions = BounceActions(state, store, ManualClock(),
                                policies=load_policies(tmp_path / "p"))
        processor = BounceProcessor(actions, store, None)
        dsn = dsn_text("app@example.com", "full@example.net", "5.2.2", "<m1@example.com>")
        assert await processor.process(dsn.encode(), "test", "k1") == "processed"
        types = [e.type for e in await state.events.by_queue_id(qm.id)]
        assert types == [EventType.ACCEPTED, EventType.SOFT_BOUNCED]
        assert await state.suppressions.all() == []  # 1 of 3
    finally:
        await store.close()
        await state.close()
