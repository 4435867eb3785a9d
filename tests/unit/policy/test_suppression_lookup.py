"""SuppressionLookup: a recipient's entries, asked for at RCPT and reused at DATA."""

from __future__ import annotations

from pathlib import Path

from gateway.model import Suppression, SuppressionReason
from gateway.policy.rules_file import SuppressionSettings
from gateway.policy.suppression import REMEMBER, SuppressionLookup
from gateway.state.store import StateStore


class CountingStore:
    """The real SQLite store, counting the lookups that reach it."""

    def __init__(self, state: StateStore) -> None:
        self._store = state.suppressions
        self.lookups = 0

    async def lookup(self, targets: tuple[str, ...], now: float) -> list[Suppression]:
        self.lookups += 1
        return await self._store.lookup(targets, now)


async def test_concurrent_sessions_to_one_guest_each_reuse_the_rcpt_lookup(
        tmp_path: Path) -> None:
    state = StateStore(tmp_path / "state.db")
    await state.open()
    try:
        await state.suppressions.add([Suppression(
            "guest@example.net", SuppressionReason.UNSUBSCRIBE, "marketing", 1.0, "test")],
            "test", 1.0)
        store = CountingStore(state)
        lookup = SuppressionLookup(SuppressionSettings(), store)  # type: ignore[arg-type]
        # Two sessions: both RCPTs, then both DATAs (the order concurrent clients give).
        for _ in range(2):
            assert [e.scope for e in await lookup.entries("Guest@Example.net", 10.0)] == [
                "marketing"]
        for _ in range(2):
            found = await lookup.entries("guest@example.net", 11.0, reuse=True)
            assert [e.scope for e in found] == ["marketing"]
        assert store.lookups == 2
        # Past REMEMBER, DATA asks the store again (an entry added since applies).
        await lookup.entries("guest@example.net", 11.0 + REMEMBER, reuse=True)
        assert store.lookups == 3
    finally:
        await state.close()
