"""`python -m metrics semantic` on label PNG folders and `python -m metrics instance` on COCO files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from metrics import instance, semantic
from metrics.__main__ import main

ROOT = Path(__file__).resolve().parents[1]


def write_labels(folder: Path, name: str, array: np.ndarray) -> None:
    (folder / name).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(folder / name)


@pytest.fixture
def label_folders(tmp_path):
    """Ground truth in per-city subfolders, predictions flat, as other tools write them."""
    rng = np.random.default_rng(0)
    pairs = {}
    for k, city in enumerate(("aachen", "bonn", "bonn")):
        gt = rng.integers(0, 19, size=(12, 16))
        gt[:2] = 255
        pred = np.where(rng.random(gt.shape) < 0.7, gt, rng.integers(0, 19, size=gt.shape)) % 255
        stem = f"{city}_{k:06d}"
        write_labels(tmp_path / "gt", f"{city}/{stem}.png", gt)
        write_labels(tmp_path / "pred", f"{stem}.png", pred)
        pairs[stem] = (gt.astype(np.uint8), pred.astype(np.uint8))
    return tmp_path / "gt", tmp_path / "pred", pairs


def run(capsys, *args) -> tuple[int, dict | None, str]:
    code = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else None, err


def test_semantic_folders(label_folders, capsys):
    gt_dir, pred_dir, pairs = label_folders
    code, result, _ = run(capsys, "semantic", gt_dir, pred_dir, "--classes", "cityscapes", "--per-image")
    assert code == 0
    counts = [semantic.image_counts(gt, pred, 19) for gt, pred in pairs.values()]
    expected = semantic.summary(semantic.sum_counts(counts, 19))
    for key in ("miou", "fwiou", "aacc", "macc", "n_classes"):
        assert result[key] == expected[key]
    assert result["n_images"] == 3 and result["per_class"]["0"]["name"] == "road"
    assert result["per_class"]["13"]["iou"] == expected["per_class"][13]["iou"]
    assert result["per_image"] == {stem: c.miou() for stem, c in zip(pairs, counts, strict=True)}
    code, by_number, _ = run(capsys, "semantic", gt_dir, pred_dir, "--num-classes", "19")
    assert code == 0 and by_number["miou"] == expected["miou"] and "name" not in by_number["per_class"]["0"]


def test_semantic_reduce_zero_label(tmp_path, capsys):
    stored = np.array([[0, 1, 1], [2, 2, 150]])  # ADE20K's PNG: 0 unlabeled, v = class v - 1
    write_labels(tmp_path / "gt", "a.png", stored)
    write_labels(tmp_path / "pred", "a.png", np.array([[7, 0, 1], [1, 1, 149]]))
    code, result, _ = run(capsys, "semantic", tmp_path / "gt", tmp_path / "pred", "--classes", "ade20k",
                          "--reduce-zero-label")
    assert code == 0 and result["aacc"] == 0.8 and result["per_class"]["149"]["iou"] == 1.0
    assert result["per_class"]["0"] == {"iou": 0.5, "acc": 0.5, "intersection": 1, "union": 2, "gt_pixels": 2,
                                        "pred_pixels": 1, "name": "wall"}


@pytest.mark.parametrize("case, message", [
    ("missing", "no prediction for bonn_000002.png"),
    ("rgb", "a label PNG must have one channel, this one is mode RGB"),
    ("size", "prediction is 3x3, the ground truth is 16x12"),
    ("value", r"ground-truth values \[20\] are neither classes"),
])
def test_semantic_errors(label_folders, capsys, case, message):
    gt_dir, pred_dir, pairs = label_folders
    if case == "missing":
        (pred_dir / "bonn_000002.png").unlink()
    elif case == "rgb":
        Image.new("RGB", (16, 12)).save(pred_dir / "bonn_000002.png")
    elif case == "size":
        write_labels(pred_dir, "bonn_000002.png", np.zeros((3, 3)))
    else:
        write_labels(gt_dir, "bonn/bonn_000002.png", np.full((12, 16), 20))
    code, _, err = run(capsys, "semantic", gt_dir, pred_dir, "--num-classes", "19")
    assert code == 1 and err.startswith("error: ") and len(err.strip().splitlines()) == 1
    assert re.search(message, err), err


def write_instance_files(tmp_path: Path):
    square = np.zeros((40, 50), bool)
    square[5:25, 5:25] = True
    gt = {"images": [{"id": 3, "height": 40, "width": 50}, {"id": 9, "height": 40, "width": 50}],
          "annotations": [{"id": 1, "image_id": 3, "category_id": 18, "iscrowd": 0, "area": 400.0,
                           "bbox": [5, 5, 20, 20], "segmentation": [[5, 5, 25, 5, 25, 25, 5, 25]]},
                          {"id": 2, "image_id": 9, "category_id": 18, "iscrowd": 0, "area": 400.0,
                           "bbox": [5, 5, 20, 20], "segmentation": instance.encode_mask(square)}],
          "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}]}
    results = [{"image_id": 3, "category_id": 18, "segmentation": instance.encode_mask(square), "score": 0.9},
               {"image_id": 3, "category_id": 1, "segmentation": instance.encode_mask(square), "score": 0.8},
               {"image_id": 9, "category_id": 18, "segmentation": instance.encode_mask(np.roll(square, 12, 1)),
                "score": 0.7}]
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "results.json").write_text(json.dumps(results))
    return gt, results


def test_instance_files(tmp_path, capsys):
    gt, results = write_instance_files(tmp_path)
    code, result, _ = run(capsys, "instance", tmp_path / "gt.json", tmp_path / "results.json", "--per-image")
    assert code == 0
    expected = instance.mask_ap(gt, results)
    assert {k: v for k, v in result.items() if k not in ("per_class", "per_image")} == {
        k: v for k, v in expected.items() if k != "per_class"}
    assert result["per_class"] == {"18": {"name": "dog", "ap": expected["per_class"][18]},
                                   "1": {"name": "person", "ap": None}}
    # Image 3: the dog found first (AP 1, less COCOeval's epsilon; the person result has no person to miss: no
    # AP); image 9: missed.
    expected = {"3": {"tp50": 1, "fp50": 1, "fn50": 0, "ap50": 1.0, "tp75": 1, "fp75": 1, "fn75": 0, "ap75": 1.0},
                "9": {"tp50": 0, "fp50": 1, "fn50": 1, "ap50": 0.0, "tp75": 0, "fp75": 1, "fn75": 1, "ap75": 0.0}}
    assert result["per_image"].keys() == expected.keys()
    for image, row in expected.items():
        assert result["per_image"][image] == pytest.approx(row, abs=1e-15)


def test_instance_errors_are_one_line(tmp_path):
    write_instance_files(tmp_path)
    (tmp_path / "bad.json").write_text(json.dumps({"not": "a list"}))
    done = subprocess.run([sys.executable, "-m", "metrics", "instance", str(tmp_path / "gt.json"),
                           str(tmp_path / "bad.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and done.stdout == "" and "Traceback" not in done.stderr
    assert done.stderr == f"error: {tmp_path / 'bad.json'}: a COCO results file is a list of results\n"
    results = json.loads((tmp_path / "results.json").read_text())
    results[0]["image_id"] = 4
    (tmp_path / "results.json").write_text(json.dumps(results))
    assert main(["instance", str(tmp_path / "gt.json"), str(tmp_path / "results.json")]) == 1


def test_task_metrics_import_neither_torch_nor_gradio():
    code = ("import sys, metrics.instance, metrics.semantic_cli, metrics.instance_cli, segdata.coco, "
            "segdata.cityscapes, segdata.detect; print(sorted({'torch', 'gradio'} & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


def test_instance_diagnostics_and_comparison(tmp_path, capsys):
    gt, results = write_instance_files(tmp_path)
    (tmp_path / "fewer.json").write_text(json.dumps(results[:1]))
    code, result, _ = run(capsys, "instance", tmp_path / "gt.json", tmp_path / "results.json", "--diagnostics",
                          "--compare", tmp_path / "fewer.json")
    assert code == 0
    expected = instance.mask_ap(gt, results, diagnostics=True)
    assert result["tide"] == expected["tide"] and result["calibration"] == expected["calibration"]
    # Image 3's "person" on the dog: a classification error; image 9's dog, found with IoU 0.25 (at least the
    # background IoU 0.1): a localisation error, not a miss.
    assert result["tide"]["counts"] == {"Cls": 1, "Loc": 1, "Both": 0, "Dupe": 0, "Bkg": 0, "Miss": 0}
    assert result["compare"] == instance.compare_ap(gt, results, results[:1])
