"""Console sessions: expiry (idle and absolute), logout, a bounded table, CSRF checks."""

from __future__ import annotations

import pytest

from gateway.console import session as sessions_module
from gateway.console.session import IDLE, MAX_AGE, Sessions, csrf_ok


def test_a_session_lives_while_used_and_ends_idle_at_max_age_or_logout() -> None:
    table = Sessions()
    sid, s = table.create("console:admin", 1000.0)
    assert table.get(sid, 1000.0 + IDLE - 1) is s
    assert table.get(sid, 1000.0 + 2 * IDLE - 2) is s  # each request renews the idle time
    assert table.get(sid, 1000.0 + 3 * IDLE) is None  # idle too long: gone for good
    assert table.get(sid, 1000.0) is None
    sid, s = table.create("console:admin", 0.0)
    t = 0.0
    while t < MAX_AGE - IDLE:
        t += IDLE / 2
        assert table.get(sid, t) is s
    assert table.get(sid, MAX_AGE + 1) is None  # however busy
    sid, _ = table.create("console:ops", 0.0)
    table.end(sid)
    assert table.get(sid, 0.0) is None
    assert table.get("made-up", 0.0) is None and table.get(None, 0.0) is None


def test_the_table_is_bounded_and_keeps_no_session_id(monkeypatch: pytest.MonkeyPatch
                                                       ) -> None:
    monkeypatch.setattr(sessions_module, "MAX_SESSIONS", 3)
    table = Sessions()
    ids = [table.create("a", 0.0)[0] for _ in range(5)]
    assert len(table) == 3
    assert table.get(ids[0], 0.0) is None and table.get(ids[4], 0.0) is not None
    assert not any(i in repr(vars(table)) for i in ids)  # only their hashes are kept


def test_csrf() -> None:
    table = Sessions()
    _, s = table.create("a", 0.0)
    assert csrf_ok(s, s.csrf)
    assert not csrf_ok(s, s.csrf + "x") and not csrf_ok(s, None) and not csrf_ok(s, "")
    _, other = table.create("a", 0.0)
    assert not csrf_ok(s, other.csrf)
