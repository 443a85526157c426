"""The dump with models of every task (issue 13): each model runs its own task, and the semantic and instance files
equal metrics computed independently (metrics.semantic on the readers' ground truth, pycocotools on the written
COCO files), on ADE20K-format toy scenes with the demo models, and on generated COCO and Cityscapes zips with tiny
random models; resuming, reindexing and DINOv3 delta checkpoints with their backbone."""

from __future__ import annotations

import csv
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import eomt
import predict_dump
from dump import demo
from dump.folder import Layout, read_manifest
from dump.model_specs import parse_model_arg, read_models_file, with_backbones
from eomt.render import segments_to_class_map
from metrics import instance as instance_metrics
from metrics import semantic as semantic_metrics
from metrics.coco_panoptic import read_png
from segdata import scenes
from segdata.ade20k import ADE20K
from synthetic.models import confident_model, tiny_config
from tests.oracles import pycocotools_image_counts
from tests.test_predict_dump import folder_files

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 4
BASE, SMALL = demo.DEMO_MODELS["toy-base"], demo.DEMO_MODELS["toy-small"]
SEMANTIC = demo.DEMO_SEMANTIC["toy-semantic"]
# A panoptic, a semantic and an instance model (the panoptic demo model run as instance: its top-100 pairs).
MODELS = ["--model", f"pan={SMALL}", "--model", f"sem={SEMANTIC}", "--model", f"ins={BASE}@instance"]


def run_dump(args) -> int:
    return predict_dump.main([*map(str, args), "--workers", "0"])


def csv_rows(path: Path) -> list[dict]:
    with open(path) as f:
        return list(csv.DictReader(f))


@pytest.fixture(scope="module")
def scenes_data(tmp_path_factory):
    return scenes.write_scenes(tmp_path_factory.mktemp("scenes"), num_train=0, num_val=N_IMAGES, seed=3)


@pytest.fixture(scope="module")
def mixed(scenes_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("mixed") / "out"
    assert run_dump(["--data", scenes_data, *MODELS, "--out", out, "--batch-size", "2"]) == 0
    return out


def test_each_model_runs_its_own_task(mixed):
    manifest = read_manifest(mixed)
    assert [(m["name"], m["task"]) for m in manifest["models"]] == [("pan", "panoptic"), ("sem", "semantic"),
                                                                     ("ins", "instance")]
    assert manifest["dataset"]["ground_truth_tasks"] == ["panoptic", "semantic", "instance"]
    assert all(m["images_done"] == N_IMAGES for m in manifest["models"])
    layout = Layout(mixed, N_IMAGES)
    image = layout.image_name(1)
    assert layout.annotation_json(image, "pan").exists() and not layout.annotation_json(image, "sem").exists()
    assert layout.semantic_png(image, "sem").exists() and not layout.semantic_png(image, "pan").exists()
    assert layout.instance_json(image, "ins").exists() and not layout.semantic_json(image, "ins").exists()
    for model in ("pan", "sem", "ins"):
        with Image.open(layout.pred_png(image, model)) as picture:
            assert picture.mode == "RGB" and picture.size == (manifest["images"][1]["width"],
                                                              manifest["images"][1]["height"])


def _predicted_semantic(layout: Layout, image: str, model: str) -> np.ndarray:
    if model == "sem":
        return np.asarray(Image.open(layout.semantic_png(image, model)))
    segments = json.loads(layout.annotation_json(image, model).read_text())["segments_info"]
    class_map = segments_to_class_map(read_png(layout.panoptic_png(image, model)), segments)
    return semantic_metrics.semantic_from_class_map(class_map)


def test_semantic_files_equal_metrics_computed_independently(scenes_data, mixed):
    reader = ADE20K(scenes_data)
    layout = Layout(mixed, N_IMAGES)
    predictor = eomt.Predictor(eomt.load_model(SEMANTIC))
    stats, confusion = csv_rows(mixed / "semantic_stats.csv"), csv_rows(mixed / "semantic_confusion.csv")
    metrics = json.loads((mixed / "task_metrics.json").read_text())["models"]
    for model, task in (("pan", "panoptic"), ("sem", "semantic")):
        total = semantic_metrics.ConfusionMatrix(150)
        expected_stats, expected_confusion = [], []
        for index in range(N_IMAGES):
            image = layout.image_name(index)
            gt = reader.semantic(index)
            assert np.array_equal(np.asarray(Image.open(layout.semantic_png(image, "gt"))), gt)
            pred = _predicted_semantic(layout, image, model)
            if model == "sem":  # the dump's batched windows give the predictor's own map
                assert np.array_equal(pred, predictor.semantic(reader.read_image(index)).astype(np.uint8))
            counts = total.update(gt, pred)
            expected_stats += [{"image": image, "model": model, "source_task": task,
                                **{k: str(v) for k, v in r.items()}} for r in counts.records()]
            matrix = semantic_metrics.confusion(gt, pred, 150)
            expected_confusion += [{"image": image, "model": model, "source_task": task, "gt_category_id": str(g),
                                    "pred_category_id": str(-1 if p == 150 else p), "pixels": str(matrix[g, p])}
                                   for g, p in zip(*np.nonzero(matrix), strict=True) if g != p]
        assert [r for r in stats if r["model"] == model] == expected_stats
        assert [r for r in confusion if r["model"] == model] == expected_confusion
        stored = json.loads(layout.confusion_json(model).read_text())
        assert np.array_equal(np.array(stored["matrix"]), total.matrix)
        summary = semantic_metrics.summary(total.counts())
        mine = metrics[model]["semantic"]
        assert mine["source_task"] == task and mine["images"] == N_IMAGES
        assert (mine["miou"], mine["fwiou"], mine["aacc"], mine["macc"]) == \
            (summary["miou"], summary["fwiou"], summary["aacc"], summary["macc"])
        assert mine["miou"] > 0.3, "trained models: an mIoU near 0 would prove little"
    assert metrics["ins"]["semantic"] is None and metrics["sem"]["instance"] is None


def test_instance_files_equal_pycocotools(scenes_data, mixed):
    reader = ADE20K(scenes_data)
    layout = Layout(mixed, N_IMAGES)
    gt = json.loads(layout.coco_instance_json("gt").read_text())
    # The instance ground truth is the panoptic ground truth's thing segments (ADE20K has no instance file).
    derived = [a for index in range(N_IMAGES)
               for a in instance_metrics.annotations_from_panoptic(*reader.panoptic(index), index)]
    assert [{k: v for k, v in a.items() if k != "id"} for a in gt["annotations"]] == \
        [{k: v for k, v in a.items() if k != "id"} for a in derived]
    assert [a["id"] for a in gt["annotations"]] == list(range(1, len(derived) + 1))
    predictor = eomt.Predictor(eomt.load_model(BASE))
    metrics = json.loads((mixed / "task_metrics.json").read_text())["models"]
    stats = csv_rows(mixed / "instance_stats.csv")
    things = {c["id"] for c in gt["categories"]}
    for model, task in (("pan", "panoptic"), ("ins", "instance")):
        results = json.loads(layout.coco_instance_json(model).read_text())
        if model == "ins":  # the top 100 (query, class) pairs of the predictor, as COCO results
            assert results == [r for index in range(N_IMAGES) for r in instance_metrics.results_from_instances(
                index, predictor.instance(reader.read_image(index)))]
        evaluator = instance_metrics.pycocotools_evaluation(gt, results)
        mine = metrics[model]["instance"]
        assert mine["source_task"] == task
        for name, value in zip(instance_metrics._STATS, evaluator.stats, strict=True):
            assert mine[name] == (None if value < 0 else pytest.approx(value, abs=1e-12)), name
        assert mine["ap50"] > 0.1, "an AP of 0 would make the comparison prove little"
        for threshold, t_index in (("50", 0), ("75", 5)):
            reference = {key: value for key, value in pycocotools_image_counts(evaluator, t_index).items()
                         if any(value)}
            ours = {(int(r["image"][4:]), int(r["category_id"])): tuple(int(r[f"{c}{threshold}"])
                                                                       for c in ("tp", "fp", "fn"))
                    for r in stats if r["model"] == model}
            assert {k: v for k, v in ours.items() if any(v)} == reference
        assert {int(r["category_id"]) for r in stats if r["model"] == model} <= things


def test_rerun_rewrites_nothing_and_reindex_rebuilds_the_task_files(scenes_data, mixed, tmp_path):
    before = {p: p.stat().st_mtime_ns for p in mixed.rglob("*") if p.is_file()}
    assert run_dump(["--data", scenes_data, *MODELS, "--out", mixed]) == 0
    assert {p: p.stat().st_mtime_ns for p in mixed.rglob("*") if p.is_file()} == before
    copy = tmp_path / "copy"
    shutil.copytree(mixed, copy)
    derived = ["semantic_stats.csv", "semantic_confusion.csv", "instance_stats.csv", "task_metrics.json",
               "semantic/pan.json", "semantic/sem.json", "instance/gt.json", "instance/ins.json", "instance/pan.json"]
    for name in derived:
        (copy / name).unlink()
    # A panoptic model's records are recomputed from its PNG when missing or broken.
    (copy / "semantic/pan/val_0001.json").unlink()
    (copy / "instance/pan/val_0002.json").write_text("{broken")
    assert predict_dump.main(["--out", str(copy), "--reindex"]) == 0
    assert folder_files(copy) == folder_files(mixed)


def test_killed_mixed_run_resumes_to_the_same_folder(scenes_data, mixed, tmp_path):
    out = tmp_path / "killed"
    args = [str(ROOT / "predict_dump.py"), "--data", str(scenes_data), *map(str, MODELS), "--out", str(out),
            "--workers", "0"]
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "semantic" / "sem").glob("*.json")):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    done = list((out / "instance" / "ins").glob("*.json")) if (out / "instance" / "ins").exists() else []
    assert len(done) < N_IMAGES and not (out / "task_metrics.json").exists(), "the kill came too late"
    assert subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True).returncode == 0
    assert {k: v for k, v in folder_files(out).items() if not k.endswith(".tmp")} == folder_files(mixed)


def test_a_version_1_folder_reindexes_without_task_files(mixed, tmp_path):
    """A folder written before tasks existed (panoptic only, no semantic ground truth): reindex makes the
    panoptic files and empty task tables, and no semantic number it could not stand on."""
    old = tmp_path / "v1"
    shutil.copytree(mixed, old)
    shutil.rmtree(old / "semantic")
    shutil.rmtree(old / "instance")
    manifest = json.loads((old / "manifest.json").read_text())
    manifest["models"] = [{k: v for k, v in m.items() if k not in ("task", "backbone_weights")}
                          for m in manifest["models"] if m["name"] == "pan"]
    manifest["dataset"] = {k: v for k, v in manifest["dataset"].items() if k != "ground_truth_tasks"}
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    assert predict_dump.main(["--out", str(old), "--reindex"]) == 0
    for name in ("segment_stats.csv", "instance_counts.json", "analysis_stats.csv"):
        reference = (mixed / name).read_text()
        assert (old / name).read_text() == reference, name
    assert csv_rows(old / "semantic_stats.csv") == [] and csv_rows(old / "instance_stats.csv") == []
    metrics = json.loads((old / "task_metrics.json").read_text())["models"]
    assert metrics["pan"]["semantic"] is None and metrics["pan"]["panoptic"]["pq"] is not None
    assert not (old / "semantic").exists()


# ------------------------------------------------------------------------------------ COCO and Cityscapes

def _save(config, path: Path, seed: int) -> str:
    eomt.save_model(confident_model(config, seed=seed), path)
    return str(path)


@pytest.fixture(scope="module")
def coco_folder(tmp_path_factory):
    from synthetic.coco import toy_images, write_coco_zips

    base = tmp_path_factory.mktemp("coco")
    data = write_coco_zips(base / "coco", toy_images(4, seed=1))
    panoptic, instance = eomt.PRESETS["coco_panoptic_eomt_large_640"], eomt.PRESETS["coco_instance_eomt_large_640"]
    fields = ("num_classes", "class_names", "stuff_classes", "class_colors")
    pan = _save(tiny_config(num_queries=6, **{f: getattr(panoptic, f) for f in fields}), base / "pan.safetensors", 1)
    ins = _save(tiny_config(num_queries=6, task="instance", **{f: getattr(instance, f) for f in fields}),
                base / "ins.safetensors", 2)
    out = base / "out"
    assert run_dump(["--data", data, "--model", f"pan={pan}", "--model", f"ins={ins}", "--out", out]) == 0
    return data, out


def test_coco_instance_files_keep_the_datasets_ids(coco_folder):
    from segdata.coco import COCO

    data, out = coco_folder
    reader = COCO(data)
    manifest = read_manifest(out)
    assert manifest["dataset"]["ground_truth_tasks"] == ["panoptic", "semantic", "instance"]
    assert [m["task"] for m in manifest["models"]] == ["panoptic", "instance"]
    assert manifest["dataset"]["category_ids"] == [c.coco_id for c in reader.classes]
    assert [e["image_id"] for e in manifest["images"]] == reader.image_ids
    gt = json.loads((out / "instance" / "gt.json").read_text())
    original = reader.coco_ground_truth()
    assert [i["id"] for i in gt["images"]] == [i["id"] for i in original["images"]]
    assert [(c["id"], c["name"]) for c in gt["categories"]] == [(c["id"], c["name"]) for c in original["categories"]]
    strip = ("id", "image_id")
    assert [{k: v for k, v in a.items() if k not in strip} for a in gt["annotations"]] == \
        [{k: v for k, v in a.items() if k not in strip} for i in reader.image_ids
         for a in original["annotations"] if a["image_id"] == i]
    metrics = json.loads((out / "task_metrics.json").read_text())["models"]
    layout = Layout(out, len(reader))
    for model in ("pan", "ins"):
        results = json.loads(layout.coco_instance_json(model).read_text())
        assert results and {r["image_id"] for r in results} <= set(reader.image_ids)
        assert {r["category_id"] for r in results} <= {c["id"] for c in original["categories"]} | \
            {c.coco_id for c in reader.classes}
        evaluator = instance_metrics.pycocotools_evaluation(original, results)  # the dataset's own file, unchanged
        assert metrics[model]["instance"]["ap"] == (None if evaluator.stats[0] < 0 else
                                                    pytest.approx(evaluator.stats[0], abs=1e-12))
    for index in range(len(reader)):
        image = layout.image_name(index)
        assert np.array_equal(np.asarray(Image.open(layout.semantic_png(image, "gt"))), reader.semantic(index))


def test_cityscapes_semantic_only(tmp_path):
    from synthetic.cityscapes import toy_images, write_cityscapes_zips

    data = write_cityscapes_zips(tmp_path / "cs", {"val": toy_images(per_city=1)}, instance_ids=False)
    preset = eomt.PRESETS["cityscapes_semantic_eomt_large_1024"]
    fields = {f: getattr(preset, f) for f in ("num_classes", "class_names", "stuff_classes", "class_colors")}
    sem = _save(tiny_config(task="semantic", **fields), tmp_path / "sem.safetensors", 3)
    pan = _save(tiny_config(num_queries=6, **fields), tmp_path / "pan.safetensors", 4)
    out = tmp_path / "out"
    assert run_dump(["--data", data, "--model", f"sem={sem}", "--model", f"pan={pan}", "--out", out]) == 0
    manifest = read_manifest(out)
    assert manifest["dataset"]["ground_truth_tasks"] == ["semantic"]
    metrics = json.loads((out / "task_metrics.json").read_text())["models"]
    # No panoptic or instance ground truth: the panoptic model is predicted and scored on its class map only.
    assert metrics["pan"]["panoptic"] is None and metrics["pan"]["instance"] is None
    assert metrics["pan"]["semantic"]["source_task"] == "panoptic" and metrics["sem"]["semantic"]["images"] == 3
    assert (out / "val_0000_target.png").exists() and not (out / "panoptic" / "gt").exists()
    assert not (out / "instance" / "gt.json").exists()


def test_model_arguments_tasks_and_backbones(tmp_path):
    assert parse_model_arg("a=ckpt.bin@semantic") == parse_model_arg("a=ckpt.bin", None).__class__(
        "a", "ckpt.bin", None, "semantic")
    spec = parse_model_arg("a=x@ade20k_panoptic_eomt_large_640@instance")
    assert (spec.source, spec.preset, spec.task) == ("x", "ade20k_panoptic_eomt_large_640", "instance")
    models = tmp_path / "models.txt"
    models.write_text("d,delta.bin@coco_panoptic_eomt_large_640_dinov3,/w/dinov3.safetensors\nb,plain.bin\n")
    specs = read_models_file(models)
    assert [(s.name, s.backbone) for s in specs] == [("d", "/w/dinov3.safetensors"), ("b", None)]
    specs, default = with_backbones(specs, ["b=/w/other", "/w/default"])
    assert [(s.name, s.backbone) for s in specs] == [("d", "/w/dinov3.safetensors"), ("b", "/w/other")]
    assert default == "/w/default"
    with pytest.raises(ValueError, match="not given: zz"):
        with_backbones(specs, ["zz=/w/x"])
    with pytest.raises(ValueError, match="second default"):
        with_backbones(specs, ["/w/x", "/w/y"])


def test_class_count_refusals_name_the_model(scenes_data, tmp_path, capsys):
    five = _save(tiny_config(num_classes=5), tmp_path / "five.safetensors", 1)
    assert run_dump(["--data", scenes_data, "--model", f"five={five}", "--out", tmp_path / "o"]) == \
        predict_dump.EXIT_REFUSED
    assert "model 'five' (panoptic) predicts 5 classes, the data has 150" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- DINOv3 backbones

def test_dinov3_delta_checkpoint_with_its_backbone(scenes_data, tmp_path, capsys):
    import torch
    from safetensors.torch import save_file

    from tests.oracles import (
        hf_dinov3_backbone,
        hf_dinov3_model,
        hf_dinov3_to_original,
        hub_backbone_state,
        official_delta,
    )

    reference = hf_dinov3_model(32, 2, 2, 1, num_labels=150, num_queries=4, seed=4)
    backbone = hub_backbone_state(hf_dinov3_backbone(32, 2, 2, seed=5))
    (tmp_path / "dinov3").mkdir()
    save_file(backbone, str(tmp_path / "dinov3" / "model.safetensors"))
    torch.save(official_delta(hf_dinov3_to_original(reference.state_dict()), backbone), tmp_path / "delta.bin")
    ade = eomt.PRESETS["ade20k_panoptic_eomt_large_640"]
    config = tiny_config(backbone="vit_small_patch16_dinov3_qkvb", num_queries=4, num_classes=150,
                         class_names=ade.class_names, stuff_classes=ade.stuff_classes, class_colors=ade.class_colors)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    delta = f"d={tmp_path / 'delta.bin'}@{tmp_path / 'config.json'}"
    out = tmp_path / "out"
    # Without a name the backbone goes to every model that needs one; the DINOv2 demo model does not.
    assert run_dump(["--data", scenes_data, "--model", delta, "--model", f"small={SMALL}", "--limit", "2",
                     "--backbone-weights", tmp_path / "dinov3", "--out", out]) == 0
    entries = {m["name"]: m for m in read_manifest(out)["models"]}
    assert entries["d"]["backbone_weights"] == str(tmp_path / "dinov3") and entries["small"]["backbone_weights"] is None
    assert entries["d"]["images_done"] == 2
    # The same prediction as the model loaded with its backbone directly.
    model = eomt.load_model(tmp_path / "delta.bin", config=config, backbone_weights=tmp_path / "dinov3")
    result = eomt.Predictor(model).panoptic(ADE20K(scenes_data).read_image(0))
    assert np.array_equal(read_png(Layout(out, 2).panoptic_png("val_0000", "d")), result.coco()[0])
    # The app's live tab loads it with the backbone the manifest records.
    from viewer import live
    from viewer.index import load_folder

    labels = live.run_models(load_folder(out), ["d"], np.asarray(ADE20K(scenes_data).read_image(0))).labels["d"]
    assert not isinstance(labels, str), labels
    assert np.array_equal(labels.segment_map, result.coco()[0])
    # A rerun must name the same backbone; without one the delta file does not load.
    capsys.readouterr()
    assert run_dump(["--data", scenes_data, "--model", delta, "--limit", "2", "--out", out]) == \
        predict_dump.EXIT_REFUSED
    assert "delta checkpoint" in capsys.readouterr().err
    assert run_dump(["--data", scenes_data, "--model", delta, "--limit", "2", "--out", out, "--backbone-weights",
                     f"d={tmp_path / 'dinov3' / 'model.safetensors'}"]) == predict_dump.EXIT_REFUSED
    assert "use another name or --overwrite" in capsys.readouterr().err


def test_coco_with_instance_annotations_only(coco_folder, tmp_path, capsys):
    from segdata.coco import PANOPTIC_ZIP

    data, out = coco_folder
    shutil.copytree(data, tmp_path / "coco")
    (tmp_path / "coco" / PANOPTIC_ZIP).unlink()
    ins, pan = out.parent / "ins.safetensors", out.parent / "pan.safetensors"
    only = tmp_path / "out"
    assert run_dump(["--data", tmp_path / "coco", "--model", f"ins={ins}", "--out", only]) == 0
    manifest = read_manifest(only)
    assert manifest["dataset"]["ground_truth_tasks"] == ["instance"] and len(manifest["classes"]) == 80
    assert (only / "val_0000_target.png").exists() and not (only / "semantic" / "gt").exists()
    # The same instance files as with the panoptic annotations beside them.
    for name in ("instance/gt.json", "instance/ins.json"):
        assert (only / name).read_bytes() == (out / name).read_bytes(), name
    assert csv_rows(only / "instance_stats.csv") == [r for r in csv_rows(out / "instance_stats.csv") if r["model"] == "ins"]
    capsys.readouterr()
    assert run_dump(["--data", tmp_path / "coco", "--model", f"pan={pan}", "--out", tmp_path / "refused"]) == \
        predict_dump.EXIT_REFUSED
    assert "model 'pan' (panoptic) predicts 133 classes, the data has 80" in capsys.readouterr().err
