"""Regression tests of the hardening issue: each reproduces what hostile or unlucky input did before."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import predict_dump
from dump.run import EXIT_SOME_FAILED
from synthetic.ade20k import write_toy_ade20k
from synthetic.models import confident_model, tiny_ade_config

ROOT = Path(__file__).resolve().parents[1]
N_IMAGES = 3


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Toy ADE20K zips and a tiny checkpoint that predicts segments."""
    import eomt

    base = tmp_path_factory.mktemp("hardening")
    data = write_toy_ade20k(base / "ade", N_IMAGES)
    checkpoint = eomt.save_model(confident_model(tiny_ade_config(num_queries=3), seed=1), base / "tiny.safetensors")
    return {"base": base, "data": data, "checkpoint": checkpoint}


def run_dump(args: list) -> int:
    return predict_dump.main([*map(str, args), "--workers", "0"])


def error_lines(stderr: str) -> list[str]:
    """What a run printed on stderr, less tqdm's progress bars (which redraw with carriage returns)."""
    lines = stderr.replace("\r", "\n").splitlines()
    return [line for line in lines if line.strip() and "img/s]" not in line and "?img/s" not in line]


def remove_member(zip_path: Path, suffix: str) -> str:
    with zipfile.ZipFile(zip_path) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    removed = next(info.filename for info, _ in members if info.filename.endswith(suffix))
    with zipfile.ZipFile(zip_path, "w") as dst:
        for info, payload in members:
            if info.filename != removed:
                dst.writestr(info, payload)
    return removed


def test_a_missing_instance_annotation_is_a_reported_failure(setup, tmp_path, capsys):
    # Before: the image's things silently became void, its PQ changed and the run exited 0.
    data = tmp_path / "ade"
    shutil.copytree(setup["data"], data)
    member = remove_member(data / "annotations_instance.zip", "ADE_val_00000002.png")
    out = tmp_path / "out"
    assert run_dump(["--data", data, "--model", f"m={setup['checkpoint']}", "--out", out]) == EXIT_SOME_FAILED
    failures = json.loads((out / "failures.json").read_text())["failures"]
    assert [(f["image"], f["stage"]) for f in failures] == [("val_0001", "data")]
    assert member in failures[0]["reason"] and "missing" in failures[0]["reason"]
    assert member in capsys.readouterr().err
    counts = json.loads((out / "instance_counts.json").read_text())
    assert "val_0001_pq_pred_m" not in counts["pq"] and counts["dataset_level_metrics"]["m"]["n_images"] == 2


def test_failure_reasons_are_the_same_on_every_rerun(setup, tmp_path):
    # Before: PIL's message named the in-memory buffer by address, so failures.json changed on every run.
    data = tmp_path / "ade"
    shutil.copytree(setup["data"], data)
    images = data / "ADEChallengeData2016.zip"
    with zipfile.ZipFile(images) as src:
        members = [(info, src.read(info)) for info in src.infolist()]
    with zipfile.ZipFile(images, "w") as dst:
        for info, payload in members:
            dst.writestr(info, b"not an image at all" if info.filename.endswith("00000002.jpg") else payload)
    reasons = []
    for run in ("first", "second"):
        out = tmp_path / run
        assert run_dump(["--data", data, "--model", f"m={setup['checkpoint']}", "--out", out]) == EXIT_SOME_FAILED
        reasons.append((out / "failures.json").read_text())
    assert reasons[0] == reasons[1] and " at 0x" not in reasons[0]
    assert "cannot decode image (not an image format PIL can read)" in reasons[0]


def huge_png(path: Path, width: int = 20000, height: int = 20000) -> Path:
    """A tiny file whose PNG header claims width x height pixels: what a decompression bomb looks like to a
    reader before it decodes anything (a real one is a few MB of zeros that inflate to gigabytes)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64))
                     + chunk(b"IEND", b""))
    return path


def eomt_cli(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eomt", "predict", *map(str, args)], cwd=ROOT, capture_output=True,
                          text=True, timeout=300)


def test_predict_refuses_a_decompression_bomb_in_one_line(setup, tmp_path):
    # Before: PIL only warned above 89 MP and the predictor went on to allocate gigabytes.
    for side, message in ((12000, "12000x12000 is 144.0 megapixels, more than the limit of 40.0"),
                          (20000, "more than 179 megapixels, which PIL refuses to decode")):
        bomb = huge_png(tmp_path / f"bomb{side}.png", side, side)
        result = eomt_cli(bomb, "--model", setup["checkpoint"], "--out", tmp_path / "out.png", "--device", "cpu")
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.strip().count("\n") == 0, result.stderr
        assert f"{bomb}: {message}" in result.stderr


def test_predict_refuses_a_file_over_the_byte_cap_in_one_line(setup, tmp_path):
    # The uploads' byte cap applies to the command line too, before the file is opened; --max-bytes 0 lifts it.
    from eomt.images import MAX_BYTES

    noise = np.random.default_rng(0).integers(0, 256, (1200, 1600, 3), dtype=np.uint8)
    large = tmp_path / "large.bmp"  # uncompressed: 5.8 MB of noise, small in pixels
    from PIL import Image

    Image.fromarray(noise).save(large)
    size = large.stat().st_size
    result = eomt_cli(large, "--model", setup["checkpoint"], "--out", tmp_path / "out.png", "--device", "cpu",
                      "--max-bytes", 2**20)
    assert result.returncode == 2 and result.stdout == "" and result.stderr.strip().count("\n") == 0
    assert f"{large}: {size / 2**20:.1f} MB, more than the limit of 1.0 MB" in result.stderr
    assert size < MAX_BYTES and eomt_cli(large, "--model", setup["checkpoint"], "--out", tmp_path / "out.png",
                                         "--device", "cpu").returncode == 0


def test_predict_into_a_folder_is_one_line_with_status_1(setup, tmp_path):
    photo = tmp_path / "photo.png"
    from PIL import Image

    Image.new("RGB", (40, 30), (90, 120, 30)).save(photo)
    (tmp_path / "taken").mkdir()
    result = eomt_cli(photo, "--model", setup["checkpoint"], "--out", tmp_path / "taken", "--device", "cpu")
    assert result.returncode == 1 and result.stderr.strip().count("\n") == 0, result.stderr
    assert "taken" in result.stderr and "Is a directory" in result.stderr


@pytest.mark.parametrize("shard", ["../outside.safetensors", "/etc/passwd", "sub/x.safetensors", ".."])
def test_checkpoint_shards_stay_inside_their_folder(tmp_path, shard):
    import eomt

    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    (folder / "model.safetensors.index.json").write_text(json.dumps({"weight_map": {"q.weight": shard}}))
    with pytest.raises(eomt.CheckpointError, match="is not a file name inside"):
        eomt.load_model(folder)


@pytest.mark.parametrize("names, message", [
    (("a", "a.json"), "would collide with another model's"),
    (("gt.json",), "would collide with another model's"),
    (("GT",), "names the ground truth"),
    (("Base", "base"), "differ only in case"),
])
def test_model_names_that_collide_with_the_folders_files_are_refused_up_front(setup, tmp_path, names, message,
                                                                            capsys):
    # Before: `a` and `a.json` (or `gt.json`) passed the name check and crashed with IsADirectoryError after the
    # whole run; `Base` and `base` overwrote each other on case-insensitive file systems.
    models = [arg for name in names for arg in ("--model", f"{name}={setup['checkpoint']}")]
    out = tmp_path / "out"
    assert run_dump(["--data", setup["data"], *models, "--out", out]) == 1
    assert message in capsys.readouterr().err
    assert not out.exists()  # refused before anything was written


def test_a_name_colliding_with_a_model_already_in_the_folder_is_refused(setup, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_dump(["--data", setup["data"], "--model", f"Base={setup['checkpoint']}", "--out", out,
                 "--limit", "1"]) == 0
    assert run_dump(["--data", setup["data"], "--model", f"base={setup['checkpoint']}", "--out", out,
                 "--limit", "1"]) == 1
    assert "'Base' is already in the folder" in capsys.readouterr().err


def test_a_rerun_finishes_aggregates_a_killed_run_left_stale(setup, tmp_path, monkeypatch):
    # Before: adding a model and killing the run between its last prediction and its aggregates left
    # panoptic/<model>.json missing and instance_counts.json without the model; the rerun exited 0 and printed "-".
    import dump.run as dump_run

    out = tmp_path / "out"
    model = ["--data", setup["data"], "--out", out]
    assert run_dump([*model, "--model", f"A={setup['checkpoint']}"]) == 0

    def killed(*args, **kwargs):
        (out / ".instance_counts.json.x1y2.tmp").write_bytes(b"")  # what a kill mid-write leaves
        raise KeyboardInterrupt

    monkeypatch.setattr(dump_run, "build_aggregates", killed)
    with pytest.raises(KeyboardInterrupt):
        run_dump([*model, "--model", f"B={setup['checkpoint']}"])
    monkeypatch.undo()
    assert not (out / "panoptic" / "B.json").exists()
    assert run_dump([*model, "--model", f"B={setup['checkpoint']}"]) == 0
    counts = json.loads((out / "instance_counts.json").read_text())["dataset_level_metrics"]
    assert set(counts) == {"A", "B"} and counts["B"]["n_images"] == N_IMAGES
    assert (out / "panoptic" / "B.json").exists()
    assert not list(out.rglob("*.tmp"))


def test_a_rerun_finishes_task_aggregates_a_killed_run_left_stale(setup, tmp_path, monkeypatch, capsys):
    # Before: a kill inside the task aggregates (after instance_counts.json listed the new model) went unnoticed:
    # the rerun exited 0, task_metrics.json and semantic_stats.csv kept only the first model, AP printed "-".
    import dump.aggregates as aggregates

    out = tmp_path / "out"
    model = ["--data", setup["data"], "--out", out]
    assert run_dump([*model, "--model", f"A={setup['checkpoint']}"]) == 0

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(aggregates, "build_task_aggregates", killed)
    with pytest.raises(KeyboardInterrupt):
        run_dump([*model, "--model", f"B={setup['checkpoint']}"])
    monkeypatch.undo()
    capsys.readouterr()
    assert run_dump([*model, "--model", f"B={setup['checkpoint']}"]) == 0
    task_metrics = json.loads((out / "task_metrics.json").read_text())
    assert set(task_metrics["models"]) == {"A", "B"}
    assert set(pd.read_csv(out / "semantic_stats.csv")["model"]) == {"A", "B"}
    summary = [line for line in capsys.readouterr().out.splitlines() if line.startswith("B ")]
    assert summary and summary[0].split("|")[-2].split() != ["-", "-"], summary  # mIoU and AP, not "-"


def test_a_folder_where_a_file_should_be_stops_the_run_in_one_line(setup, tmp_path, capsys):
    # Before: IsADirectoryError surfaced as a traceback (or as a failure of every image, one by one).
    out = tmp_path / "out"
    args = ["--data", setup["data"], "--out", out]
    assert run_dump([*args, "--model", f"A={setup['checkpoint']}"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and "A" in p.name}
    (out / "val_0001_pred_B.png").mkdir()
    capsys.readouterr()
    assert run_dump([*args, "--model", f"B={setup['checkpoint']}"]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].endswith("val_0001_pred_B.png: Is a directory"), err
    assert {p: p.read_bytes() for p in before} == before  # nothing written is lost
    assert (out / "panoptic" / "B" / "val_0000.json").exists()  # and what was done stays done


def test_a_full_disk_stops_the_run_in_one_line(setup, tmp_path, capsys, monkeypatch):
    import errno

    from eomt import atomic

    real, calls = atomic.write_file, []

    def filling_up(path, write):
        calls.append(path)
        if len(calls) > 12:
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, write)

    monkeypatch.setattr(atomic, "write_file", filling_up)
    out = tmp_path / "out"
    assert run_dump(["--data", setup["data"], "--model", f"m={setup['checkpoint']}", "--out", out]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].endswith(": No space left on device") and str(out) in err[0], err
    assert not list(out.rglob("*.tmp"))


def test_a_read_only_output_folder_stops_the_run_in_one_line(setup, tmp_path, capsys, monkeypatch):
    # A shared dump opened read-only (tests run as root, where chmod refuses nothing: the file system's answer
    # is simulated for every file and folder created under the output folder).
    import errno
    import os

    out = tmp_path / "out"
    args = ["--data", setup["data"], "--out", out]
    assert run_dump([*args, "--model", f"A={setup['checkpoint']}"]) == 0
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}

    def read_only(real):
        def call(path, *more, **options):
            if str(path).startswith(str(out)):
                raise OSError(errno.EROFS, "Read-only file system", str(path))
            return real(path, *more, **options)
        return call

    monkeypatch.setattr(os, "open", read_only(os.open))
    monkeypatch.setattr(os, "mkdir", read_only(os.mkdir))
    capsys.readouterr()
    assert run_dump([*args, "--model", f"B={setup['checkpoint']}"]) == 1
    err = error_lines(capsys.readouterr().err)
    assert len(err) == 1 and err[0].endswith(": Read-only file system") and str(out) in err[0], err
    monkeypatch.undo()
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before  # nothing written is lost


HOSTILE = ["# A heading [a link](http://evil.example/x) ![an image](http://evil.example/i.png)",
           "<img src=http://evil.example/i.png> <b>bold</b> **strong** `tick` ``two`` `",
           "line one\n# line two", "http://evil.example/bare www.evil.example"]


@pytest.mark.parametrize("value", HOSTILE)
def test_text_from_files_and_links_renders_as_text(value):
    from markdown_it import MarkdownIt

    from viewer.markup import text

    html = MarkdownIt("commonmark", {"html": True}).render(f"note: {text(value)}")
    assert "<a" not in html and "<img" not in html and "<h1" not in html and "<b>" not in html, html
    shown = html.removeprefix("<p>note: <code>").removesuffix("</code></p>\n")
    import html as html_module

    assert html_module.unescape(shown).strip() == " ".join(value.splitlines()).strip()


def test_a_crafted_deep_link_and_class_names_show_as_text(index):
    from markdown_it import MarkdownIt

    from viewer import events, filters

    shown = events.display(index, index.models, "labels", 0.6, True, False, True, None, None)
    _, listing = events.open_page(index, HOSTILE[0], shown)
    rendered = MarkdownIt("commonmark", {"html": True}).render(listing.status)
    assert "<a" not in rendered and "<img" not in rendered and "<h1" not in rendered
    assert "A heading" in rendered
    label = filters.describe(filters.ImageFilter(classes=(0,)), lambda c: HOSTILE[1])
    rendered = MarkdownIt("commonmark", {"html": True}).render(label)
    assert "<img" not in rendered and "<b>" not in rendered


def test_user_errors_are_shown_as_text_in_the_error_box():
    import gradio as gr

    import gradio_app
    from viewer.events import UserError

    def jump():
        raise UserError(f"No image {HOSTILE[1]!r} in this folder")

    with pytest.raises(gr.Error) as shown:
        gradio_app._for_user(jump)()
    assert "<img" not in shown.value.message and "&lt;img" in shown.value.message


def test_the_viewer_refuses_manifest_entries_that_would_escape_or_exhaust(tmp_path):
    # Before: a model named ../../../outside made the app read files outside the folder; a class id of 10**10
    # made its colour table exhaust memory.
    from synthetic.folders import make_folder
    from viewer.index import load_folder

    folder = make_folder(tmp_path / "out", n_images=3, models=("alpha", "beta"), seed=2)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["models"] += [{**manifest["models"][0], "name": "../../../outside"},
                           {**manifest["models"][0], "name": "ALPHA"}]
    manifest["classes"] += [{"id": 10**10, "name": "huge", "isthing": True, "color": [1, 2, 3]},
                            {"id": "7", "name": "text id", "isthing": True, "color": [1, 2, 3]}]
    manifest["images"].append({"index": -5, "key": "x", "stem": "x", "width": 4, "height": 4})
    (folder / "manifest.json").write_text(json.dumps(manifest))
    index = load_folder(folder)
    assert index.models == ["alpha", "beta"] and index.n_images == 3
    assert max(index.classes.names) < 150 and index.classes.palette.shape == (150, 3)
    refused = [p for p in index.problems if "entry refused" in p]
    assert len(refused) == 5, refused
    assert any("../../../outside" in p for p in refused) and any("ALPHA" in p for p in refused)
    assert [m["name"] for m in index.manifest["models"]] == ["alpha", "beta"]  # the live tab reads these


@pytest.mark.parametrize("host, warned", [("0.0.0.0", True), ("192.168.1.5", True), ("::", True),
                                          ("127.0.0.1", False), ("localhost", False), ("::1", False)])
def test_serving_beyond_this_machine_warns(host, warned):
    import gradio_app

    warning = gradio_app.host_warning(host)
    assert (warning is not None) == warned
    if warned:
        assert f"--host {host}" in warning and "without a login" in warning


def test_the_warning_is_printed_when_the_app_starts(index, monkeypatch, capsys):
    import gradio_app

    monkeypatch.setattr(gradio_app, "launch", lambda demo, host, port: None)  # not a server: just what it says
    assert gradio_app.main([str(index.root), "--host", "0.0.0.0"]) == 0
    assert "warning: --host 0.0.0.0 serves this folder" in capsys.readouterr().err


def test_a_truncated_input_picture_is_noted_not_sent(tmp_path):
    # Before: the truncated PNG went to the browser as it was, half a picture without a word.
    from synthetic.folders import make_folder
    from viewer.index import load_folder
    from viewer.panels import photo_png

    folder = make_folder(tmp_path / "out", n_images=2, models=("alpha",), seed=3)
    path = folder / "val_0001_input.png"
    path.write_bytes(path.read_bytes()[:-20])
    index = load_folder(folder)
    assert photo_png(index, 0)[0] is not None
    assert photo_png(index, 1) == (None, "input picture val_0001_input.png is truncated")


def test_other_data_at_the_same_path_is_refused(setup, tmp_path, capsys):
    # Before: the folder's identity was only the data's path, so other data put there was mixed into the folder.
    data = tmp_path / "ade"
    shutil.copytree(setup["data"], data)
    out = tmp_path / "out"
    args = ["--data", data, "--model", f"m={setup['checkpoint']}", "--out", out]
    assert run_dump(args) == 0
    shutil.rmtree(data)
    write_toy_ade20k(data, N_IMAGES, seed=9)  # the same names, other pictures and sizes
    assert run_dump(args) == 1
    assert f"was written for the data at {data.resolve()}, whose files have changed" in capsys.readouterr().err
    assert run_dump([*args, "--overwrite"]) == 0


def test_a_folder_written_before_fingerprints_still_resumes(setup, tmp_path):
    out = tmp_path / "out"
    args = ["--data", setup["data"], "--model", f"m={setup['checkpoint']}", "--out", out]
    assert run_dump(args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    del manifest["dataset"]["fingerprint"]
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert run_dump(args) == 0
    assert "fingerprint" in json.loads((out / "manifest.json").read_text())["dataset"]


MALFORMED = [  # (what the file says, the field the one-line error must name)
    (lambda d: d["annotations"][1].update(segments_info={"id": 5}), "image 2: 'segments_info' must be a list"),
    (lambda d: d["annotations"][1]["segments_info"][0].pop("id"), "image 2: segments_info[0]: 'id' must be"),
    (lambda d: d["annotations"][1].update(image_id=[2]), "annotation 1: 'image_id' must be an integer or a string"),
    (lambda d: d["annotations"][1]["segments_info"][0].update(area=float("nan")), "segments_info[0]: 'area'"),
    (lambda d: d["annotations"][1]["segments_info"][0].update(area="12"), "segments_info[0]: 'area' must be"),
    (lambda d: d["annotations"][1]["segments_info"][0].update(iscrowd=True), "segments_info[0]: 'iscrowd' must"),
]


@pytest.mark.parametrize("change, message", MALFORMED)
def test_malformed_panoptic_files_are_one_line_errors(tmp_path, change, message):
    # Before: tracebacks, or (a string area) PQ 1.035.
    from test_coco_panoptic import write_dataset

    gt_json, pred_json = write_dataset(tmp_path)
    for path in (gt_json, pred_json):
        document = json.loads(path.read_text())
        change(document)
        path.write_text(json.dumps(document, allow_nan=True))
        result = subprocess.run([sys.executable, "-m", "metrics", gt_json, pred_json], cwd=ROOT,
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1 and result.stdout == "", result.stdout
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(f"error: {path}: ") and message in lines[0], result.stderr
        gt_json, pred_json = write_dataset(tmp_path)  # the other file broken alone next


def test_the_live_tab_refuses_a_decompression_bomb_and_downscales_large_photos(tmp_path, index):
    # Before: a 2 MB PNG of 12000x12000 pixels took the server to 9 GB for 51 s and kept 2.6 GB afterwards.
    from PIL import Image

    from viewer import events, live

    with pytest.raises(events.UserError, match="The uploaded image: 12000x12000 is 144.0 megapixels, more than"):
        events.live_run(index, str(huge_png(tmp_path / "bomb.png", 12000, 12000)), index.models)
    big = tmp_path / "big.jpg"
    Image.new("RGB", (4000, 3000), (120, 80, 40)).save(big)
    photo = live.load_photo(str(big))
    assert photo.shape == (1200, 1600, 3) and photo.dtype == np.uint8  # the long side at LIVE_MAX_SIDE
    assert live.load_photo(np.zeros((30, 40, 3), np.uint8)).shape == (30, 40, 3)  # small ones stay as they are
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with pytest.raises(events.UserError, match="not an image this app can read"):
        events.live_run(index, str(tmp_path / "junk.png"), index.models)


def test_the_server_caps_uploads(app):
    import urllib.request

    with urllib.request.urlopen(f"{app}/config", timeout=30) as response:
        config = json.load(response)
    assert config["max_file_size"] == 25 * 1024 * 1024


def test_training_into_an_unwritable_place_is_one_line(tmp_path, capsys):
    from segdata.scenes import write_scenes
    from training.__main__ import main as train_main

    data = write_scenes(tmp_path / "scenes", num_train=4, num_val=1, seed=1)
    (tmp_path / "run").write_text("a file where the run folder should be")
    code = train_main(["--data", str(data), "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2",
                       "--depth", "2", "--dim", "32", "--heads", "2", "--img-size", "32", "--num-queries", "4",
                       "--num-blocks", "1", "--workers", "0", "--no-progress", "--val-limit", "0"])
    err = error_lines(capsys.readouterr().err)
    assert code == 1 and len(err) == 1 and err[0].startswith(f"training: {tmp_path / 'run'}"), err
