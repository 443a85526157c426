"""python -m metrics: panopticapi-shaped JSON on stdout, and malformed inputs reported as one clear line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from test_coco_panoptic import EXPECTED, EXPECTED_PER_IMAGE, write_dataset, write_png

from metrics.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def run_cli(*args):
    return subprocess.run([sys.executable, "-m", "metrics", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)


def with_string_keys(result):
    return json.loads(json.dumps(result))


def test_cli_prints_panopticapi_shaped_json(tmp_path):
    gt_json, pred_json = write_dataset(tmp_path)
    done = run_cli(gt_json, pred_json, "--per-image")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert list(result) == ["All", "Things", "Stuff", "per_class", "per_image"]
    assert result["per_image"] == with_string_keys(EXPECTED_PER_IMAGE)  # image 3 has nothing active: null
    assert {k: v for k, v in result.items() if k != "per_image"} == with_string_keys(EXPECTED)


@pytest.mark.parametrize("options", [[], ["--engine", "numpy", "--workers", "1"]])
def test_cli_explicit_folders(tmp_path, capsys, options):
    gt_json, pred_json = write_dataset(tmp_path)
    (tmp_path / "gt").rename(tmp_path / "gt_pngs")
    (tmp_path / "pred").rename(tmp_path / "pred_pngs")
    assert main([str(gt_json), str(pred_json), "--gt-folder", str(tmp_path / "gt_pngs"),
                 "--pred-folder", str(tmp_path / "pred_pngs"), *options]) == 0
    result = json.loads(capsys.readouterr().out)
    assert "per_image" not in result and with_string_keys(result) == with_string_keys(EXPECTED)


def edit_pred(pred_json, edit):
    document = json.loads(pred_json.read_text())
    edit(document)
    pred_json.write_text(json.dumps(document))


def first_segments(document):
    return document["annotations"][0]["segments_info"]


@pytest.mark.parametrize("break_it, message", [
    (lambda d, root: first_segments(d).pop(),
     "In the image with ID 1 segment with ID 2 is presented in PNG and not presented in JSON"),
    (lambda d, root: first_segments(d).append({"id": 77, "category_id": 7, "iscrowd": 0}),
     r"In the image with ID 1 the following segment IDs \[77\] are presented in JSON and not presented in PNG"),
    (lambda d, root: first_segments(d)[0].update(category_id=99),
     "In the image with ID 1 predicted segment with ID 1 has unknown category_id 99"),
    (lambda d, root: d["annotations"].pop(1), "no prediction for the image with id: 2"),
    (lambda d, root: (root / "pred" / "ADE_val_00000003.png").unlink(), "ADE_val_00000003.png: file not found"),
    (lambda d, root: write_png(root / "pred" / "ADE_val_00000003.png", np.zeros((2, 2), np.int32)),
     r"In the image with ID 3 ground truth is \(6, 8\) but prediction is \(2, 2\)"),
])
@pytest.mark.parametrize("engine", ["auto", "numpy"])
def test_malformed_predictions_give_panopticapi_errors(tmp_path, capsys, break_it, message, engine):
    gt_json, pred_json = write_dataset(tmp_path)
    edit_pred(pred_json, lambda document: break_it(document, tmp_path))
    assert main([str(gt_json), str(pred_json), "--engine", engine]) == 1
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and len(captured.err.splitlines()) == 1
    assert re.search(message, captured.err), captured.err


def test_unknown_ground_truth_category_and_missing_folder(tmp_path, capsys):
    gt_json, pred_json = write_dataset(tmp_path)
    document = json.loads(gt_json.read_text())
    document["categories"] = [c for c in document["categories"] if c["id"] != 7]
    gt_json.write_text(json.dumps(document))
    assert main([str(gt_json), str(pred_json)]) == 1
    assert "In the image with ID 1 ground truth segment with ID 2 has unknown category_id 7" in capsys.readouterr().err
    assert main([str(gt_json), str(pred_json), "--pred-folder", str(tmp_path / "nowhere")]) == 1
    assert f"Folder {tmp_path / 'nowhere'} with predicted segmentations doesn't exist" in capsys.readouterr().err


def test_cli_error_is_one_line_without_traceback(tmp_path):
    gt_json, pred_json = write_dataset(tmp_path)
    pred_json.write_text("{ not json")
    done = run_cli(gt_json, pred_json)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith(f"error: {pred_json}: not a readable JSON file") and "Traceback" not in done.stderr


def test_metrics_imports_neither_torch_nor_gradio():
    code = ("import sys, metrics.pq, metrics.coco_panoptic, metrics.instance_counts, metrics.semantic, "
            "metrics.__main__; print(sorted({'torch', 'gradio'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr
