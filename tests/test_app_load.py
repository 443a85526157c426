"""Load: 20 gradio_client sessions step through images at once for 30 s; no error, each sees its own image."""

from __future__ import annotations

import random
import threading
import time

import pytest
from gradio_client import Client

from synthetic.folders import make_folder
from tests.app_runner import running_app

SESSIONS = 20
SECONDS = 30.0
MODELS = ["alpha", "beta"]
CONTROLS = (MODELS, "labels", 0.6, True, True, True, "alpha", "beta", 0.5, 0.5)


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    folder = make_folder(tmp_path_factory.mktemp("load") / "out", n_images=30, models=tuple(MODELS), seed=6)
    with running_app(folder) as url:
        yield url


def browse(url: str, seed: int, deadline: float, results: dict) -> None:
    """One user: jumps to a random image, checks it is the one shown, steps forward, checks again."""
    rng = random.Random(seed)
    steps, wrong, errors = 0, [], []
    try:
        client = Client(url, verbose=False)
        client.predict(*CONTROLS, api_name="/load")
        while time.monotonic() < deadline:
            wanted = rng.randrange(0, 29)
            name, _, panels, *_ = client.predict(f"val_{wanted:04d}", *CONTROLS, api_name="/jump")
            if name != f"val_{wanted:04d}" or f'data-image="val_{wanted:04d}"' not in panels:
                wrong.append((wanted, name))
            name, _, panels, *_ = client.predict(*CONTROLS, api_name="/next")
            if name != f"val_{wanted + 1:04d}" or f'data-image="val_{wanted + 1:04d}"' not in panels:
                wrong.append((wanted + 1, name))
            steps += 2
    except Exception as e:  # reported below with the session it happened in
        errors.append(repr(e))
    results[seed] = (steps, wrong, errors)


def test_twenty_concurrent_sessions_keep_their_own_image(app):
    results: dict = {}
    deadline = time.monotonic() + SECONDS
    threads = [threading.Thread(target=browse, args=(app, seed, deadline, results)) for seed in range(SESSIONS)]
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
    print(f"{SESSIONS} sessions, {total} image views in {SECONDS:.0f} s")
