"""Load: 20 gradio_client sessions browse at once for 30 s (jump, next, the Dataset tab); no error, each sees its
own image. The latency of every endpoint is printed as p50 / p95 (measured, not asserted: wall-clock time depends
on the machine)."""

from __future__ import annotations

import random
import statistics
import threading
import time
from collections import defaultdict

import pytest
from gradio_client import Client

from synthetic.folders import make_folder
from tests.app_runner import running_app

SESSIONS = 20
SECONDS = 30.0
MODELS = ["alpha", "beta"]
CONTROLS = (MODELS, "labels", 0.6, True, True, True, "alpha", "beta", 0.5, 0.5)
DATASET = (MODELS, "PQ", "all", "all", "alpha", "beta", "none", 0.1)  # the Dataset tab's controls


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("load") / "out", n_images=30, models=tuple(MODELS), seed=6)
    with running_app(folder) as url:
        yield url


def browse(url: str, seed: int, deadline: float, results: dict, latencies: dict) -> None:
    """One user: jumps to a random image, checks it is the one shown, steps forward, checks again; every third
    round opens the Dataset tab."""
    rng = random.Random(seed)
    steps, wrong, errors = 0, [], []

    def timed(endpoint: str, *args):
        started = time.perf_counter()
        out = client.predict(*args, api_name=endpoint)
        latencies[endpoint].append(time.perf_counter() - started)
        return out

    try:
        client = Client(url, verbose=False)
        timed("/load", *CONTROLS)
        while time.monotonic() < deadline:
            wanted = rng.randrange(0, 29)
            name, _, panels, *_ = timed("/jump", f"val_{wanted:04d}", *CONTROLS)
            if name != f"val_{wanted:04d}" or f'data-image="val_{wanted:04d}"' not in panels:
                wrong.append((wanted, name))
            name, _, panels, *_ = timed("/next", *CONTROLS)
            if name != f"val_{wanted + 1:04d}" or f'data-image="val_{wanted + 1:04d}"' not in panels:
                wrong.append((wanted + 1, name))
            steps += 2
            if steps % 6 == 0:
                summary, *_ = timed("/dataset", *DATASET)
                if summary["headers"][0] != "model":
                    wrong.append(("dataset", summary["headers"]))
    except Exception as e:  # reported below with the session it happened in
        errors.append(repr(e))
    results[seed] = (steps, wrong, errors)


def test_twenty_concurrent_sessions_keep_their_own_image(app):
    results: dict = {}
    latencies: dict[str, list[float]] = defaultdict(list)
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=browse, args=(app, seed, deadline, results, latencies))
               for seed in range(SESSIONS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=SECONDS + 120)
    assert len(results) == SESSIONS, "some sessions never finished"
    for seed, (steps, wrong, errors) in sorted(results.items()):
        assert errors == [], f"session {seed}: {errors}"
        assert wrong == [], f"session {seed} saw another image: {wrong}"
        assert steps >= 2, f"session {seed} made no step"
    total = sum(steps for steps, _, _ in results.values())
    print(f"\n{SESSIONS} sessions, {total} image views in {SECONDS:.0f} s")
    for endpoint, seconds in sorted(latencies.items()):
        p50, p95 = statistics.median(seconds), statistics.quantiles(seconds, n=20)[-1] if len(seconds) > 1 else 0
        print(f"  {endpoint:<9} {len(seconds):4d} calls   p50 {p50:6.2f} s   p95 {p95:6.2f} s")
    assert len(latencies["/dataset"]) >= SESSIONS  # the Dataset tab was under load too
