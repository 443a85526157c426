"""Results shared by sessions: computed once per key, even when sessions ask at the same time."""

from __future__ import annotations

import threading
import time

import pytest

from viewer.cache import SharedResults


def test_concurrent_requests_compute_once_and_get_the_same_result():
    results, calls = SharedResults(), []

    def slow():
        calls.append(1)
        time.sleep(0.2)
        return object()

    got = []
    threads = [threading.Thread(target=lambda: got.append(results.get(("q", 1), slow))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(calls) == 1 and len(got) == 8 and all(value is got[0] for value in got)


def test_least_recently_used_results_are_dropped_and_failures_are_not_kept():
    results = SharedResults(size=2)
    for key in ("a", "b", "a", "c"):  # b is the least recently used when c arrives
        results.get(key, lambda key=key: key.upper())
    calls = []
    assert results.get("a", lambda: calls.append("a")) == "A" and calls == []
    assert results.get("b", lambda: "again") == "again"

    def failing():
        raise RuntimeError("broken")

    with pytest.raises(RuntimeError):
        results.get("x", failing)
    assert results.get("x", lambda: "fixed") == "fixed"
