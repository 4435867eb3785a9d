"""File ingestion with actions: `smtp-gateway bounce ingest --apply FILE...`.

Each message of each .eml or mbox file goes through the same BounceProcessor
as mail from SMTP, IMAP or a Maildir, against the configured state (the
gateway may be running: the state files, or the PostgreSQL database, are
shared by processes and nodes). The key
is the SHA-256 of the message, so ingesting the same file twice counts each
bounce once.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from gateway.bounces.actions import BounceActions
from gateway.bounces.ingest import BounceProcessor
from gateway.bounces.service import codec_for
from gateway.clock import SystemClock
from gateway.config import Config
from gateway.policy.rules_file import load_policies
from gateway.state.store import open_state

__all__ = ["ingest_files"]


async def ingest_files(config: Config, paths: list[Path]) -> list[dict[str, Any]]:
    """One result line per message: file, index, outcome (or error)."""
    from gateway.bounces.mbox import messages

    state = open_state(config)  # the configured backend: PostgreSQL is shared with the nodes
    store = state.bounces
    policies = load_policies(config.policies_dir) if config.policies_dir else None
    actions = BounceActions(state, store, SystemClock(), policies=policies)
    processor = BounceProcessor(actions, store, codec_for(config))
    await state.open()
    out: list[dict[str, Any]] = []
    try:
        for path in paths:
            for index, data in enumerate(messages(path)):
                key = "file:" + hashlib.sha256(data).hexdigest()
                line: dict[str, Any] = {"file": str(path), "index": index}
                try:
                    line["outcome"] = await processor.process(data, "file", key)
                except Exception as exc:  # one bad message must not stop the batch
                    line["error"] = f"{type(exc).__name__}: {exc}"
                out.append(line)
        await actions.drain()
    finally:
        await state.close()
    return out
