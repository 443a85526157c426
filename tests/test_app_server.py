"""The app as a server: started from its command line, driven through its named endpoints with gradio_client."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest
from gradio_client import Client

import gradio_app
from dump.folder import GT
from synthetic.folders import MODELS, break_folder, make_folder
from tests.app_runner import ROOT, running_app
from viewer.filters import ImageFilter, filter_images, rank_images
from viewer.index import load_folder

# Display controls, in the order every image event takes them (after the hidden session state).
CONTROLS = (list(MODELS), "labels", 0.6, True, False, True, "alpha", "beta", 0.5, 0.5)


def frame(value) -> pd.DataFrame:
    return pd.DataFrame(value["data"], columns=value["headers"])


def files(update):
    """Export buttons reveal their file box: the client gets the update, the file paths are its value."""
    return update["value"] if isinstance(update, dict) else update


def test_every_event_has_a_name(app):
    endpoints = Client(app, verbose=False).view_api(print_info=False, return_format="dict")["named_endpoints"]
    for name in ("/load", "/filter", "/rank", "/previous", "/next", "/jump", "/select_row", "/inspect",
                 "/export_list", "/export_image", "/dataset", "/confusion", "/live_run", "/render", "/errors",
                 "/error_images", "/error_cell", "/open_error_image", "/sweep", "/compare_ap", "/confusion_matrix",
                 "/confusion_cell", "/confusion_heatmap_cell", "/confusion_images"):
        assert name in endpoints


def test_browse_filter_rank_and_inspect_through_the_endpoints(app, folder):
    index = load_folder(folder)
    client = Client(app, verbose=False)
    shown = client.predict(*CONTROLS, api_name="/load")
    assert shown[0] == "val_0000"
    assert "image 1 of 10 (all images)" in shown[1]
    assert 'data-image="val_0000"' in shown[2] and "data:image/png;base64," in shown[2]
    assert frame(shown[4])["model"].tolist() == list(MODELS)  # this image's metrics per model

    assert client.predict(*CONTROLS, api_name="/next")[0] == "val_0001"
    assert client.predict("val_0007", *CONTROLS, api_name="/jump")[0] == "val_0007"
    assert client.predict(*CONTROLS, api_name="/previous")[0] == "val_0006"

    person_like = max(index.classes.column, key=lambda c: (index.instance_counts[GT][:, index.classes.column[c]] > 0).sum())
    expected = filter_images(index, ImageFilter(classes=(person_like,)))
    filtered = client.predict([person_like], "all", GT, 0, 0, 0, 0, *CONTROLS, api_name="/filter")
    assert filtered[0] == index.images[expected[0]]
    assert frame(filtered[8])["image"].tolist() == [index.images[p] for p in expected]
    assert f"**{len(expected)} images**" in filtered[9]

    ranked = client.predict("alpha", "beta", "b_better", "pq", 3, *CONTROLS, api_name="/rank")
    expected = rank_images(index, expected, "alpha", "beta", "b_better", "pq", 3).positions
    assert frame(ranked[8])["image"].tolist() == [index.images[p] for p in expected]
    assert ranked[0] == index.images[expected[0]]

    inspector = frame(client.predict(5, 4, *CONTROLS, api_name="/inspect"))
    assert inspector["source"].tolist() == ["ground truth", *MODELS]

    path = files(client.predict(list(MODELS), api_name="/export_list"))
    assert pd.read_csv(path)["image"].tolist() == [index.images[p] for p in expected]
    paths = files(client.predict(list(MODELS), 5, 4, api_name="/export_image"))
    assert sorted(p.rsplit("/", 1)[-1] for p in paths) == sorted(
        f"{index.images[expected[0]]}_{kind}.csv" for kind in ("metrics", "pairwise", "classes", "class_differences",
                                                               "pixel_5_4"))


def test_display_controls_and_dataset_endpoints(app):
    client = Client(app, verbose=False)
    client.predict(*CONTROLS, api_name="/load")
    with_errors = client.predict(list(MODELS), "overlay", 0.3, False, True, True, "alpha", "gamma",
                                 api_name="/render")
    html = with_errors[2]
    assert all(f"{m}: errors" in html for m in MODELS) and "A = alpha vs B = gamma" in html
    assert "vw-overlay" in html and "--vw-opacity:0.300" in html

    summary, *_, table, status = client.predict(list(MODELS), "PQ", "all", "all", "alpha", "beta", "none", 0.1,
                                                api_name="/dataset")
    assert frame(summary)["model"].tolist() == list(MODELS)
    assert "counts summed over all 10 images" in status
    confusion, path = client.predict(list(MODELS), "all", api_name="/confusion")
    assert set(frame(confusion)["model"]) <= set(MODELS) and files(path).endswith(".csv")


def test_errors_and_thresholds_endpoints(app, folder):
    from viewer.analysis import images_by_fix

    index = load_folder(folder)
    client = Client(app, verbose=False)
    dataset = (list(MODELS), "PQ", "all", "all", "alpha", "beta", "none", 0.1)
    note, summary, _, classes, _, tide_note, tide, _ = client.predict("All", *dataset, api_name="/errors")
    # This folder has no instance ground truth: no model is scored as instances, and the TIDE table says so.
    assert "do not add up" in note and "TIDE" in tide_note and frame(tide).empty
    assert frame(summary)["model"].tolist() == list(MODELS)
    assert set(frame(classes)["model"]) == {"alpha", "beta"}
    listed, status, model, fix, class_id = client.predict("gamma", "missed", -1, 5, *dataset,
                                                          api_name="/error_images")
    expected = images_by_fix(index, "gamma", "missed", top_n=5)
    assert frame(listed)["image"].tolist() == expected["image"].tolist() and len(expected) > 1
    assert f"**{len(expected)} images**" in status
    chart, table, sweep_status = client.predict(list(MODELS), "pq", "All", api_name="/sweep")
    assert frame(table)["default"].sum() == len(MODELS) and "Best PQ" in sweep_status


def test_sessions_do_not_share_their_position(app):
    first, second = Client(app, verbose=False), Client(app, verbose=False)
    first.predict(*CONTROLS, api_name="/load")
    second.predict(*CONTROLS, api_name="/load")
    first.predict("val_0008", *CONTROLS, api_name="/jump")
    assert second.predict(*CONTROLS, api_name="/next")[0] == "val_0001"
    assert first.predict(*CONTROLS, api_name="/next")[0] == "val_0009"


def test_no_file_is_served_from_disk(app, folder):
    # Pictures travel inside the page; the server hands out no file of the folder, nor any other.
    for path in (folder / "manifest.json", folder / "val_0000_input.png", "/etc/passwd"):
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"{app}/gradio_api/file={path}", timeout=10)
        assert refused.value.code in (403, 404)


def test_a_broken_folder_still_serves_and_lists_its_problems(tmp_path):
    folder = make_folder(tmp_path / "out", n_images=6, models=MODELS, seed=5)
    broken = break_folder(folder)
    with running_app(folder) as url:
        with urllib.request.urlopen(f"{url}/config", timeout=10) as response:
            config = json.dumps(json.load(response))
        assert "problem(s)" in config and broken["no_ground_truth"] in config
        client = Client(url, verbose=False)
        # The malformed annotation is found by the background check; the next page load lists it.
        deadline = time.monotonic() + 60
        while "unreadable annotation JSON" not in client.predict(*CONTROLS, api_name="/load")[-1]:
            assert time.monotonic() < deadline, "the background check never reported the malformed annotation"
            time.sleep(0.5)
        image, model = broken["truncated_png"]
        shown = client.predict(image, *CONTROLS, api_name="/jump")
        assert "cannot read PNG" in shown[2] and shown[0] == image
        image, model = broken["missing_prediction"]
        shown = client.predict(image, *CONTROLS, api_name="/jump")
        assert f"{model}: no prediction for {image}" in shown[2]
        assert f"model {model}: no prediction" in shown[1]  # said under the image too


def test_without_a_folder_it_opens_the_demo(tmp_path, monkeypatch):
    from dump import demo

    monkeypatch.setenv(demo.CACHE_ENV, str(tmp_path / "cache"))
    monkeypatch.setattr(demo, "DEMO_IMAGES", 2)
    folder = gradio_app.default_folder()
    assert folder.parent == tmp_path / "cache"
    index = load_folder(folder)
    assert index.n_images == 2 and index.models == list(demo.folder_models())


def test_without_a_folder_or_demo_checkpoints_it_says_how_to_make_a_folder(tmp_path):
    # A copy of the app whose demo checkpoints are missing: the command line explains instead of failing.
    env = {**os.environ, "EOMT_COMPARE_CACHE": str(tmp_path / "cache")}
    script = ("import sys; from dump import demo; from pathlib import Path; "
              "demo.DEMO_MODELS = {k: Path('/nonexistent') / v.name for k, v in demo.DEMO_MODELS.items()}; "
              "import gradio_app; sys.exit(gradio_app.main([]))")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120,
                            env=env)
    assert result.returncode == 2
    assert "/nonexistent/demo_" in result.stderr  # names the checkpoint it lacks
    assert "python predict_dump.py --data DIR --model NAME=SOURCE --out DIR" in result.stderr


def test_command_line_defaults_to_loopback(tmp_path):
    args = gradio_app.parse_args([str(tmp_path)])
    assert (args.host, args.port) == ("127.0.0.1", 7860)
    result = subprocess.run([sys.executable, str(ROOT / "gradio_app.py"), str(tmp_path)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 2 and "manifest.json: file not found" in result.stderr
