"""End-to-end tests of predict_dump.py on generated ADE20K zips with two tiny random checkpoints."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import predict_dump
from dump.folder import SEGMENT_STATS_COLUMNS, FolderError, Layout, read_manifest
from metrics.coco_panoptic import read_png
from segdata.ade20k import ADE20K
from synthetic.ade20k import corrupt_zip_member, write_toy_ade20k
from synthetic.models import confident_model, save_original_format, tiny_ade_config

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 7


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Dataset zips, an original-format checkpoint (+ its config JSON) and a Hugging Face format folder."""
    base = tmp_path_factory.mktemp("dump")
    data = write_toy_ade20k(base / "ade", N_IMAGES)
    config = tiny_ade_config(num_queries=3)
    original = save_original_format(confident_model(config, seed=1), base / "a.bin")
    config_json = base / "a_config.json"
    config_json.write_text(json.dumps(config.to_dict()))
    hf_folder = save_hf_checkpoint(base / "b_hf", seed=2)
    models = ["--model", f"A={original}@{config_json}", "--model", f"B={hf_folder}"]
    return {"base": base, "data": data, "models": models}


def save_hf_checkpoint(folder: Path, seed: int) -> Path:
    """A tiny random model in the Hugging Face transformers layout, written by transformers itself."""
    import torch
    import transformers

    torch.manual_seed(seed)
    names = tiny_ade_config().class_names
    config = transformers.EomtConfig(hidden_size=32, num_hidden_layers=3, num_attention_heads=2, image_size=64,
                                     patch_size=16, num_queries=3, num_blocks=1,
                                     id2label=dict(enumerate(names)))
    model = transformers.EomtForUniversalSegmentation(config).eval()
    with torch.no_grad():  # as synthetic.models.confident_model, so that it predicts segments
        model.class_predictor.weight.mul_(150.0)
        model.mask_head.fc3.weight.mul_(300.0)
    model.save_pretrained(folder)
    return folder


def run_dump(args: list[str]) -> int:
    return predict_dump.main([*map(str, args), "--workers", "0"])


def run_cli(args: list[str], **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "predict_dump.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, **kwargs)


def folder_files(root: Path) -> dict[str, bytes]:
    """Every file of an output folder by relative path; timings in the manifest are left out."""
    files = {}
    for path in sorted(root.rglob("*")):
        if path.is_file():
            data = path.read_bytes()
            if path.name == "manifest.json":
                manifest = json.loads(data)
                for model in manifest["models"]:
                    model.pop("seconds_per_image")
                manifest["dataset"].pop("root")
                data = json.dumps(manifest, sort_keys=True).encode()
            files[str(path.relative_to(root))] = data
    return files


@pytest.fixture(scope="module")
def reference_folder(setup):
    out = setup["base"] / "reference"
    assert run_dump(["--data", setup["data"], *setup["models"], "--out", out, "--batch-size", "2"]) == 0
    return out


def test_every_contract_file_is_present_and_well_formed(reference_folder):
    out = reference_folder
    manifest = read_manifest(out)
    assert [m["name"] for m in manifest["models"]] == ["A", "B"]
    assert all(m["images_done"] == N_IMAGES for m in manifest["models"])
    assert len(manifest["classes"]) == 150 and manifest["classes"][12]["name"] == "person"
    lines = (out / "class_names.txt").read_text().splitlines()
    assert lines[0] == "0\twall" and len(lines) == 150
    layout = Layout(out, N_IMAGES)
    for entry in manifest["images"]:
        image = layout.image_name(entry["index"])
        assert image == f"val_{entry['index']:04d}"
        size = (entry["width"], entry["height"])
        for path in [layout.input_png(image), layout.target_png(image), layout.pred_png(image, "A"),
                     layout.pred_png(image, "B"), layout.panoptic_png(image, "gt"), layout.panoptic_png(image, "A")]:
            with Image.open(path) as picture:
                assert picture.size == size and picture.mode == "RGB", path
    for source in ("gt", "A", "B"):
        coco = json.loads((out / "panoptic" / f"{source}.json").read_text())
        assert {"images", "annotations", "categories"} <= coco.keys()
        assert len(coco["annotations"]) == N_IMAGES
        for annotation in coco["annotations"]:
            ids = read_png(out / "panoptic" / source / annotation["file_name"])
            listed = {s["id"] for s in annotation["segments_info"]}
            assert set(np.unique(ids)) - {0} == listed
            for s in annotation["segments_info"]:
                assert s["area"] == int((ids == s["id"]).sum())
                if source != "gt":
                    assert 0.8 < s["score"] <= 1.0
    predicted = sum(len(a["segments_info"]) for a in json.loads((out / "panoptic/A.json").read_text())["annotations"])
    assert predicted > 0, "the sharpened random model must predict segments, or the metrics test proves nothing"
    with open(out / "segment_stats.csv") as f:
        rows = list(csv.DictReader(f))
    assert tuple(rows[0].keys()) == SEGMENT_STATS_COLUMNS and rows
    counts = json.loads((out / "instance_counts.json").read_text())
    assert set(counts["dataset_level_metrics"]) == {"A", "B"}
    assert "val_0000_target" in counts["instance_counts"] and "val_0000_pred_B" in counts["instance_counts"]


def test_ground_truth_in_the_folder_equals_the_readers(setup, reference_folder):
    dataset = ADE20K(setup["data"], split="validation")
    layout = Layout(reference_folder, N_IMAGES)
    for index in range(N_IMAGES):
        sample = dataset[index]
        image = layout.image_name(index)
        assert np.array_equal(read_png(layout.panoptic_png(image, "gt")), sample.segment_map)
        annotation = json.loads(layout.annotation_json(image, "gt").read_text())
        assert [(s["id"], s["category_id"], s["area"]) for s in annotation["segments_info"]] == \
            [(s["id"], s["category_id"], s["area"]) for s in sample.segments]
        with Image.open(layout.input_png(image)) as photo:
            assert np.array_equal(np.asarray(photo), np.asarray(dataset.read_image(index)))


def test_instance_counts_equal_the_metrics_command(reference_folder):
    counts = json.loads((reference_folder / "instance_counts.json").read_text())
    names = [line.split("\t")[1] for line in (reference_folder / "class_names.txt").read_text().splitlines()]
    for model in ("A", "B"):
        result = subprocess.run(
            [sys.executable, "-m", "metrics", str(reference_folder / "panoptic/gt.json"),
             str(reference_folder / f"panoptic/{model}.json"), "--per-image"],
            cwd=ROOT, capture_output=True, text=True, check=True)
        reference = json.loads(result.stdout)
        level = counts["dataset_level_metrics"][model]
        assert level["pq"] == pytest.approx(reference["All"]["pq"], abs=1e-9)
        assert level["pq_things"] == pytest.approx(reference["Things"]["pq"], abs=1e-9)
        assert level["pq_stuff"] == pytest.approx(reference["Stuff"]["pq"], abs=1e-9)
        for category_id, values in reference["per_class"].items():
            assert level["per_class"][names[int(category_id)]]["pq"] == pytest.approx(values["pq"], abs=1e-9)
        for image_id, values in reference["per_image"].items():
            mine = counts["pq"][f"val_{int(image_id):04d}_pq_pred_{model}"]
            if values is None:
                assert mine["overall_pq"] is None
            else:
                assert mine["overall_pq"] == pytest.approx(values["pq"], abs=1e-9)


@pytest.mark.parametrize("which", ["reference_folder", "trained_folder"])
def test_analysis_files_equal_the_analysis_of_the_pngs(which, request):
    from metrics.analysis import ANALYSIS_COLUMNS, analyze_image

    out = request.getfixturevalue(which)
    manifest = read_manifest(out)
    layout = Layout(out, len(manifest["images"]))
    with open(out / "analysis_stats.csv") as f:
        stats = list(csv.DictReader(f))
    with open(out / "segment_errors.csv") as f:
        errors = list(csv.DictReader(f))
    expected_stats, expected_errors, typed = [], [], set()
    for entry in manifest["images"]:
        image = layout.image_name(entry["index"])
        gt_map = read_png(layout.panoptic_png(image, "gt"))
        gt_segments = json.loads(layout.annotation_json(image, "gt").read_text())["segments_info"]
        for model in [m["name"] for m in manifest["models"]]:
            pred_map = read_png(layout.panoptic_png(image, model))
            pred_segments = json.loads(layout.annotation_json(image, model).read_text())["segments_info"]
            record = analyze_image(gt_map, gt_segments, pred_map, pred_segments).record()
            assert json.loads(layout.analysis_json(image, model).read_text()) == record
            for category_id, row in record["classes"].items():
                expected_stats.append({"image": image, "model": model, "category_id": category_id,
                                       **{c: str(row[c]) for c in ANALYSIS_COLUMNS}})
            for segment in record["segments"]:
                expected_errors.append({"image": image, "model": model, **{k: str(v) for k, v in segment.items()}})
            typed.update(s["type"] for s in record["segments"])
    assert len(typed) >= (3 if which == "trained_folder" else 1), "too few kinds of error for the test to prove much"
    assert stats == expected_stats
    assert errors == expected_errors


def test_rerun_rewrites_nothing(setup, reference_folder):
    before = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in reference_folder.rglob("*") if p.is_file()}
    assert run_dump(["--data", setup["data"], *setup["models"], "--out", reference_folder]) == 0
    after = {p: (p.stat().st_mtime_ns, p.read_bytes()) for p in reference_folder.rglob("*") if p.is_file()}
    assert after == before


def test_reindex_rebuilds_the_aggregates_from_panoptic(setup, reference_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference_folder, copy)
    derived = ("segment_stats.csv", "instance_counts.json", "panoptic/gt.json", "panoptic/A.json",
               "analysis_stats.csv", "segment_errors.csv", "sweep.json")
    for name in derived:
        (copy / name).unlink()
    assert predict_dump.main(["--out", str(copy), "--reindex"]) == 0
    for name in derived:
        assert (copy / name).read_bytes() == (reference_folder / name).read_bytes(), name


def test_reindex_adds_the_analysis_to_a_version_1_folder(reference_folder, tmp_path):
    """A folder written before the analysis existed: no analysis files, manifest version 1. It still reads, and
    --reindex computes the analysis from the PNGs, giving what a version 2 dump writes."""
    import shutil

    old = tmp_path / "v1"
    shutil.copytree(reference_folder, old)
    for path in [*old.glob("panoptic/*/*.analysis.json"), old / "analysis_stats.csv", old / "segment_errors.csv",
                 old / "sweep.json", old / "semantic_stats.csv", old / "semantic_confusion.csv",
                 old / "instance_stats.csv", old / "task_metrics.json"]:
        path.unlink()
    shutil.rmtree(old / "semantic")
    shutil.rmtree(old / "instance")
    manifest = json.loads((old / "manifest.json").read_text())
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 1}))
    assert read_manifest(old)["version"] == 1
    assert predict_dump.main(["--out", str(old), "--reindex"]) == 0

    def panoptic_files(root):  # the task files need ground truth a version 1 folder does not have
        return {k: v for k, v in folder_files(root).items() if k != "manifest.json" and not
                k.startswith(("semantic", "instance/", "instance_stats", "task_metrics"))}

    assert panoptic_files(old) == panoptic_files(reference_folder)
    (old / "manifest.json").write_text(json.dumps({**manifest, "version": 3}))
    with pytest.raises(FolderError, match="version 3, this program reads 1 and 2"):
        read_manifest(old)


SWEEP = ["--sweep", "score=0.5:0.95:0.05", "overlap=0.6,0.9"]
TRAINED_IMAGES = 5


def test_reindex_recomputes_an_unusable_analysis_file(reference_folder, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(reference_folder, copy)
    broken = copy / "panoptic" / "B" / "val_0003.analysis.json"
    broken.write_text('{"segments": [], "classes": {"4": {"fn_class": "many"}}}')
    (copy / "panoptic" / "A" / "val_0001.analysis.json").write_text("{not json")
    assert predict_dump.main(["--out", str(copy), "--reindex"]) == 0
    assert folder_files(copy) == folder_files(reference_folder)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """Toy scenes and the two shipped demo models, which (unlike random ones) score a real PQ."""
    from dump import demo
    from segdata import scenes

    data = scenes.write_scenes(tmp_path_factory.mktemp("scenes"), num_train=0, num_val=TRAINED_IMAGES, seed=3)
    return {"data": data, "models": [f"--model={name}={path}" for name, path in demo.DEMO_MODELS.items()]}


@pytest.fixture(scope="module")
def trained_reference(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "plain"
    assert run_dump(["--data", trained["data"], *trained["models"], "--out", out, "--batch-size", "2"]) == 0
    return out


@pytest.fixture(scope="module")
def trained_folder(trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("trained") / "swept"
    assert run_dump(["--data", trained["data"], *trained["models"], "--out", out, "--batch-size", "2", *SWEEP]) == 0
    return out


def test_the_sweeps_default_row_is_the_dump(trained_folder, trained_reference):
    sweep = json.loads((trained_folder / "sweep.json").read_text())["models"]
    level = json.loads((trained_folder / "instance_counts.json").read_text())["dataset_level_metrics"]
    assert level == json.loads((trained_reference / "instance_counts.json").read_text())["dataset_level_metrics"]
    for model in ("toy-base", "toy-small"):
        entry = sweep[model]
        assert entry["default"] == {"score": 0.8, "overlap": 0.8} and entry["images"] == TRAINED_IMAGES
        settings = [(r["score"], r["overlap"]) for r in entry["results"]]
        assert len(settings) == 10 * 3 and (0.8, 0.8) in settings  # overlap 0.8, the default, joins the grid
        row = entry["results"][settings.index((0.8, 0.8))]
        assert level[model]["pq"] > 0.3, "a PQ of 0 would make the comparison prove nothing"
        assert (row["All"]["pq"], row["All"]["sq"], row["All"]["rq"]) == \
            (level[model]["pq"], level[model]["sq"], level[model]["rq"])
        assert (row["Things"]["pq"], row["Stuff"]["pq"]) == (level[model]["pq_things"], level[model]["pq_stuff"])
        assert len({r["All"]["pq"] for r in entry["results"]}) > 3  # the settings matter
    # Per image too: the default setting's counts are the dump's segment_stats.csv rows.
    layout = Layout(trained_folder, TRAINED_IMAGES)
    with open(trained_folder / "segment_stats.csv") as f:
        stats = [r for r in csv.DictReader(f) if r["model"] == "toy-small"]
    for index in range(TRAINED_IMAGES):
        image = layout.image_name(index)
        record = json.loads(layout.sweep_json(image, "toy-small").read_text())
        default = record["counts"][record["settings"].index(record["default"])]
        assert default == {r["category_id"]: [int(r["tp"]), int(r["fp"]), int(r["fn"]), float(r["iou_sum"])]
                           for r in stats if r["image"] == image}
    # The sweep adds files; it changes none of the normal dump's.
    normal, swept = folder_files(trained_reference), folder_files(trained_folder)
    assert {k: v for k, v in swept.items() if k in normal and k != "sweep.json"} == \
        {k: v for k, v in normal.items() if k != "sweep.json"}
    assert sorted(set(swept) - set(normal)) == sorted(f"panoptic/{m}/{layout.image_name(i)}.sweep.json"
                                                      for m in ("toy-base", "toy-small") for i in range(TRAINED_IMAGES))


def test_a_sweep_over_a_finished_folder_adds_only_the_sweep(trained, trained_reference, trained_folder, tmp_path):
    import shutil

    out = tmp_path / "later"
    shutil.copytree(trained_reference, out)
    pngs = {p: p.stat().st_mtime_ns for p in out.rglob("*.png")}
    assert run_dump(["--data", trained["data"], *trained["models"], "--out", out, *SWEEP]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.png")} == pngs  # predicted again, nothing rewritten
    assert folder_files(out) == folder_files(trained_folder)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    assert run_dump(["--data", trained["data"], *trained["models"], "--out", out, *SWEEP]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_sweep_argument_errors(capsys, tmp_path):
    for args, message in ((["--sweep", "score=0.9:0.5:0.1"], "start:stop:step"),
                          (["--sweep", "size=3"], "score=VALUES")):
        assert predict_dump.main(["--data", str(tmp_path), "--model", "A=b", "--out", str(tmp_path / "o"),
                                  *args]) == predict_dump.EXIT_REFUSED
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        predict_dump.parse_args(["--out", "o", "--reindex", "--sweep", "score=0.5"])
    assert "not with --reindex" in capsys.readouterr().err


def test_batch_size_does_not_change_the_folder(setup, reference_folder, tmp_path):
    out = tmp_path / "b1"
    assert run_dump(["--data", setup["data"], *setup["models"], "--out", out, "--batch-size", "1"]) == 0
    assert folder_files(out) == folder_files(reference_folder)


def test_killed_run_resumes_to_the_same_folder(setup, reference_folder, tmp_path):
    out = tmp_path / "killed"
    args = [str(ROOT / "predict_dump.py"), "--data", str(setup["data"]), *setup["models"], "--out", str(out),
            "--batch-size", "2", "--workers", "0"]
    process = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    # Kill as soon as the first model has some but not all images: the middle of the run.
    while time.monotonic() < deadline and not list((out / "panoptic" / "A").glob("*.json")):
        time.sleep(0.005)
    process.send_signal(signal.SIGKILL)
    process.wait()
    finished = len(list((out / "panoptic" / "B").glob("*.json"))) if (out / "panoptic" / "B").exists() else 0
    assert finished < N_IMAGES and not (out / "instance_counts.json").exists(), "the kill came too late"
    leftovers = [p for p in out.rglob("*.tmp")]
    for path in leftovers:  # a kill between write and rename leaves a temporary file, never a partial real one
        assert path.name.startswith(".")
    assert run_cli(args[1:]).returncode == 0
    assert {k: v for k, v in folder_files(out).items() if not k.endswith(".tmp")} == folder_files(reference_folder)


def test_corrupt_jpeg_is_reported_and_the_rest_is_complete(setup, tmp_path):
    import shutil

    data = tmp_path / "ade"
    shutil.copytree(setup["data"], data)
    member = corrupt_zip_member(data / "ADEChallengeData2016.zip", "ADE_val_00000003.jpg")
    out = tmp_path / "out"
    result = run_cli(["--data", data, *setup["models"], "--out", out, "--workers", "0"])
    assert result.returncode == predict_dump.EXIT_SOME_FAILED, result.stderr
    assert "val_0002" in result.stderr and "ADE_val_00000003" in result.stderr
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [(f["image"], f["stage"]) for f in failures] == [("val_0002", "data")]
    assert member.split("/")[-1] in failures[0]["reason"] or "ADE_val_00000003" in failures[0]["reason"]
    manifest = read_manifest(out)
    assert [m["images_done"] for m in manifest["models"]] == [N_IMAGES - 1] * 2
    counts = json.loads((out / "instance_counts.json").read_text())
    assert counts["dataset_level_metrics"]["A"]["n_images"] == N_IMAGES - 1


def test_missing_annotation_is_reported_and_the_image_still_predicted(setup, tmp_path):
    import shutil
    import zipfile

    data = tmp_path / "ade"
    shutil.copytree(setup["data"], data)
    images_zip = data / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(images_zip) as src:
        members = [(info, src.read(info)) for info in src.infolist() if not info.filename.endswith("00000002.png")]
    with zipfile.ZipFile(images_zip, "w") as dst:
        for info, payload in members:
            dst.writestr(info, payload)
    out = tmp_path / "out"
    assert run_dump(["--data", data, *setup["models"], "--out", out]) == predict_dump.EXIT_SOME_FAILED
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [(f["image"], f["stage"]) for f in failures] == [("val_0001", "data")]
    assert "ADE_val_00000002.png" in failures[0]["reason"] and "missing" in failures[0]["reason"]
    assert (out / "val_0001_input.png").exists() and (out / "val_0001_pred_A.png").exists()
    assert not (out / "val_0001_target.png").exists()
    counts = json.loads((out / "instance_counts.json").read_text())
    assert "val_0001_pq_pred_A" not in counts["pq"] and "val_0002_pq_pred_A" in counts["pq"]
    assert counts["dataset_level_metrics"]["A"]["n_images"] == N_IMAGES - 1


class FailingPredictor:
    """Wraps a predictor; any batch holding image `bad` fails, as a CUDA out-of-memory error would."""

    def __init__(self, predictor, bad_pixels):
        self.inner, self.bad = predictor, bad_pixels
        self.model, self.device = predictor.model, predictor.device

    def forward(self, pixels):
        if any(torch_equal(p, self.bad) for p in pixels):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.inner.forward(pixels)

    def panoptic_from_logits(self, *args):
        return self.inner.panoptic_from_logits(*args)


def torch_equal(a, b) -> bool:
    return a.shape == b.shape and bool((a == b).all())


def test_a_model_failure_loses_only_that_image(setup, reference_folder, tmp_path):
    import shutil

    import eomt
    from dump.passes import run_model
    from dump.writer import Writing
    from eomt.render import palette_array
    from eomt.transforms import resize_and_pad
    from segdata.ade20k import ADE20K

    out = tmp_path / "out"
    shutil.copytree(reference_folder, out)
    layout = Layout(out, N_IMAGES)
    for index in range(N_IMAGES):
        for path in (layout.annotation_json(layout.image_name(index), "A"), layout.pred_png(layout.image_name(index), "A")):
            path.unlink()
    dataset = ADE20K(setup["data"])
    model = eomt.load_model(setup["models"][1].split("=", 1)[1].split("@")[0], preset=setup["models"][1].split("@")[1])
    bad = resize_and_pad(dataset.read_image(3), model.config.img_size)[0]
    failures = []
    writing = Writing(layout, palette_array([c["color"] for c in read_manifest(out)["classes"]])[:-1],
                      ("panoptic", "semantic", "instance"), 150, {c: c for c in range(150)}, tuple(range(N_IMAGES)),
                      tuple(dataset.keys))
    outcome = run_model(writing, dataset, list(range(N_IMAGES)), FailingPredictor(eomt.Predictor(model), bad), "A",
                        batch_size=3, workers=0, on_failure=lambda i, reason: failures.append((i, reason)),
                        show_progress=False)
    assert [i for i, _ in failures] == [3] and "out of memory" in failures[0][1]
    assert outcome.done == N_IMAGES - 1
    for index in set(range(N_IMAGES)) - {3}:  # the batch-mates of the failing image were retried alone
        image = layout.image_name(index)
        assert layout.annotation_json(image, "A").read_bytes() == \
            (reference_folder / "panoptic" / "A" / f"{image}.json").read_bytes()
    assert not layout.annotation_json(layout.image_name(3), "A").exists()


def test_plain_image_folder_writes_predictions_without_metrics(setup, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    for name in ("b.png", "a.jpg"):
        Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 30, 3), dtype=np.uint8)).save(folder / name)
    out = tmp_path / "out"
    assert run_dump(["--data", folder, *setup["models"], "--out", out]) == 0
    manifest = read_manifest(out)
    assert [e["key"] for e in manifest["images"]] == ["a.jpg", "b.png"]
    assert manifest["dataset"]["has_ground_truth"] is False
    assert (out / "val_0001_pred_A.png").exists() and not (out / "val_0001_target.png").exists()
    counts = json.loads((out / "instance_counts.json").read_text())
    assert counts["ground_truth"] is False and counts["dataset_level_metrics"] == {"A": None, "B": None}
    assert counts["instance_counts"]["val_0000_pred_A"] is not None


def test_models_file_and_refusals(setup, tmp_path, capsys):
    a_spec, b_spec = setup["models"][1], setup["models"][3]
    models_file = tmp_path / "models.txt"
    models_file.write_text("# name,source\n" + a_spec.replace("=", ",", 1) + "\n\n")
    out = tmp_path / "out"
    assert run_dump(["--data", setup["data"], "--models-file", models_file, "--out", out, "--limit", "2"]) == 0
    assert [m["name"] for m in read_manifest(out)["models"]] == ["A"]

    def refused(args, message):
        capsys.readouterr()
        assert run_dump(args) == predict_dump.EXIT_REFUSED
        assert message in capsys.readouterr().err

    refused(["--data", setup["data"], "--model", a_spec, "--model", a_spec, "--out", tmp_path / "x"], "two models")
    refused(["--data", setup["data"], "--model", "bad/name=" + a_spec.split("=", 1)[1], "--out", tmp_path / "x"],
            "not allowed")
    broken = tmp_path / "broken.bin"
    broken.write_bytes(b"not a checkpoint")
    refused(["--data", setup["data"], "--model", f"C={broken}", "--out", tmp_path / "x"], "broken.bin")
    other = tmp_path / "other"
    write_toy_ade20k(other, 2, seed=5)
    refused(["--data", other, "--model", a_spec, "--out", out], "other data")
    refused(["--data", setup["data"], "--model", "A=" + b_spec.split("=", 1)[1], "--out", out], "use another name")
    # --overwrite starts again for the new data
    assert run_dump(["--data", other, "--model", a_spec, "--out", out, "--overwrite"]) == 0
    assert len(read_manifest(out)["images"]) == 2


def test_torchrun_with_two_processes_equals_one(setup, reference_folder, tmp_path):
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "predict_dump.py"), "--data", str(setup["data"]), *setup["models"], "--out", str(out),
         "--batch-size", "2", "--workers", "0", "--device", "cpu"],
        cwd=ROOT, capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    assert folder_files(out) == folder_files(reference_folder)
