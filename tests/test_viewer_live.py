"""The live tab's logic: which checkpoints can run, a real (tiny) checkpoint run end to end, and torch kept out of
opening a folder."""

from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

from eomt.postprocess import PanopticResult
from synthetic.folders import make_folder
from tests.app_runner import ROOT
from viewer import live
from viewer.index import load_folder
from viewer.panels import DisplayOptions, build_panels, inspect_maps, panels_html, png_bytes


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("live") / "out", n_images=2, models=("tiny", "hub"), seed=1)


def point_model_at(folder, model: str, source: str) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text())
    for entry in manifest["models"]:
        if entry["name"] == model:
            entry["source"], entry["preset"] = source, None
    path.write_text(json.dumps(manifest))


def test_opening_a_folder_and_building_the_page_do_not_import_torch(folder):
    code = ("import sys; import gradio_app; from viewer.index import load_folder; "
            f"gradio_app.build_app(load_folder({str(folder)!r})); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('torch', 'timm', 'transformers')))")
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_prediction_labels_are_shifted_to_coco_ids():
    result = PanopticResult(segment_map=np.array([[-1, 0], [1, 1]], dtype=np.int32),
                            class_map=np.array([[-1, 4], [7, 7]], dtype=np.int32),
                            segments=[{"id": 0, "category_id": 4, "isthing": True, "score": 0.9, "area": 1},
                                      {"id": 1, "category_id": 7, "isthing": False, "score": 0.8, "area": 2}])
    labels = live.prediction_labels(result)
    assert labels.segment_map.tolist() == [[0, 1], [2, 2]]  # -1 (void) becomes 0, COCO's void
    assert labels.class_map.tolist() == [[-1, 4], [7, 7]]
    assert sorted(labels.segments) == [1, 2] and labels.segments[2]["category_id"] == 7


def test_a_failing_model_shows_its_error_and_the_others_still_run(folder, monkeypatch):
    index = load_folder(folder)
    ok = SimpleNamespace(panoptic=lambda photo: PanopticResult(
        segment_map=np.zeros(photo.shape[:2], np.int32), class_map=np.full(photo.shape[:2], 3, np.int32),
        segments=[{"id": 0, "category_id": 3, "isthing": False, "score": 1.0, "area": photo.shape[0] * photo.shape[1]}]))

    def fake_load(index, model):
        if model == "hub":
            raise FileNotFoundError("hub: checkpoint not available locally")
        return ok

    monkeypatch.setattr(live, "_load", fake_load)
    result = live.run_models(index, ["tiny", "hub"], np.zeros((6, 5), np.uint8))  # grey input is fine too
    assert result.photo.shape == (6, 5, 3)
    assert result.labels["hub"] == "hub: FileNotFoundError: hub: checkpoint not available locally"
    assert result.labels["tiny"].class_map.tolist() == [[3] * 5] * 6
    panels = build_panels(None, result.labels, index.classes.palette, DisplayOptions())
    assert [p.title for p in panels] == ["Input", "tiny", "hub"] and panels[2].note.startswith("hub:")


def test_a_local_checkpoint_runs_live_end_to_end(folder, tmp_path):
    import eomt
    from synthetic.models import confident_model, tiny_ade_config

    checkpoint = eomt.save_model(confident_model(tiny_ade_config()), tmp_path / "tiny.safetensors")
    point_model_at(folder, "tiny", str(checkpoint))
    point_model_at(folder, "hub", "tue-mps/ade20k_panoptic_eomt_large_640")
    index = load_folder(folder)
    assert live.available_models(index) == ["tiny"]
    assert "`hub` (`tue-mps/ade20k_panoptic_eomt_large_640`)" in live.unavailable_note(index)

    photo = np.random.default_rng(0).integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    result = live.run_models(index, ["tiny"], photo)
    labels = result.labels["tiny"]
    assert not isinstance(labels, str), labels
    assert labels.shape == (45, 70)
    assert set(np.unique(labels.segment_map)) <= {0, *labels.segments}
    options = DisplayOptions(mode="overlay")
    html = panels_html(build_panels(None, result.labels, index.classes.palette, options), png_bytes(photo), [], "live",
                       options)
    assert html.count('class="vw-panel ') == 2
    row = inspect_maps(None, result.labels, 10, 20, index.classes.label).iloc[0]
    assert row["source"] == "tiny" and row["class"]
