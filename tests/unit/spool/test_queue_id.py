from __future__ import annotations

from gateway.spool.queue_id import arrival_time, is_queue_id, new_queue_id


def test_ids_sort_by_arrival_and_round_trip_the_time() -> None:
    ids = [new_queue_id(1_700_000_000.0 + i * 0.001) for i in range(200)]
    assert ids == sorted(ids)
    assert all(is_queue_id(i) for i in ids)
    assert abs(arrival_time(ids[5]) - 1_700_000_000.005) < 1e-6


def test_ids_are_unique_within_one_millisecond() -> None:
    ids = {new_queue_id(1_700_000_000.0) for _ in range(10_000)}
    assert len(ids) == 10_000


def test_rejects_paths_and_junk() -> None:
    assert not is_queue_id("../etc/passwd")
    assert not is_queue_id("")
    assert not is_queue_id("01JD5Q8W3K7H2M9XQ4RU")  # 'U' is not Crockford base-32
