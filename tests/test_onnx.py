"""ONNX export and ONNX Runtime inference: logits against transformers and our PyTorch model, the predictor's
three tasks, dynamic and fixed batch sizes, `python -m eomt export`, the dump, and files that are not ours."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

import eomt
import predict_dump
from eomt.__main__ import main as eomt_main
from eomt.onnx import OnnxModel, export, is_onnx_file
from synthetic.ade20k import write_toy_ade20k
from synthetic.models import confident_model, tiny_ade_config
from tests.oracles import SAMPLE_IMAGE, hf_dinov3_model, hf_logits, hf_model
from viewer import live
from viewer.index import load_folder


def _images(batch: int, size: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.rand(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // width, ys * 255 // height, (xs // 7 + ys // 5) % 2 * 200], -1)
    return (rgb + rng.integers(0, 30, rgb.shape)).clip(0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A confident tiny ADE20K model as a safetensors checkpoint, exported by the command line (dynamic batch)."""
    folder = tmp_path_factory.mktemp("onnx")
    model = confident_model(tiny_ade_config(num_queries=3), seed=1)
    checkpoint = eomt.save_model(model, folder / "tiny.safetensors")
    assert eomt_main(["export", "--model", str(checkpoint), "--out", str(folder / "tiny.onnx")]) == 0
    return {"folder": folder, "model": model, "checkpoint": checkpoint, "onnx": folder / "tiny.onnx"}


@pytest.mark.parametrize("swiglu,batch", [(False, "dynamic"), (True, 1)])
def test_logits_match_transformers_and_pytorch(tmp_path, swiglu, batch):
    """DINOv2 small/base/large blocks, and giant's SwiGLU MLP (with a fixed batch of 1, run on 3 images)."""
    reference = hf_model(48, 3, 3, 2, swiglu=swiglu)
    reference.save_pretrained(tmp_path / "hf")
    model = eomt.load_model(tmp_path / "hf")
    path = export(model, tmp_path / "model.onnx", batch=batch)
    runner = eomt.load_model(path)
    assert isinstance(runner, OnnxModel) and runner.config == model.config
    assert runner.batch == (None if batch == "dynamic" else batch)

    images = _images(3)
    want_masks, want_classes = hf_logits(reference, images)
    with torch.inference_mode():
        ours_masks, ours_classes = model(images)
        masks, classes = runner(images)
    assert masks.dtype == classes.dtype == torch.float32 and masks.shape == (3, 10, 16, 16)
    for want in ((want_masks, want_classes), (ours_masks, ours_classes)):
        torch.testing.assert_close(masks, want[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(classes, want[1], atol=1e-4, rtol=0)
    assert want_masks.abs().max() > 1  # logits with substance


def test_dinov3_logits_match_transformers_and_pytorch(tmp_path):
    """The DINOv3 backbone (RoPE on the patches behind the queries, q/v bias) exports the same way."""
    reference = hf_dinov3_model(48, 3, 3, 2)
    reference.save_pretrained(tmp_path / "hf")
    model = eomt.load_model(tmp_path / "hf")
    assert model.config.family == "dinov3"
    runner = eomt.load_model(export(model, tmp_path / "model.onnx"))
    images = _images(3)
    want_masks, want_classes = hf_logits(reference, images)
    with torch.inference_mode():
        ours_masks, ours_classes = model(images)
        masks, classes = runner(images)
    for want in ((want_masks, want_classes), (ours_masks, ours_classes)):
        torch.testing.assert_close(masks, want[0], atol=1e-4, rtol=0)
        torch.testing.assert_close(classes, want[1], atol=1e-4, rtol=0)
    assert want_masks.abs().max() > 1


def test_dynamic_batch_runs_at_batch_1_and_3(tiny):
    runner = eomt.load_model(tiny["onnx"])
    assert runner.batch is None
    metadata = {p.key: p.value for p in onnx.load(str(tiny["onnx"]), load_external_data=False).metadata_props}
    assert metadata["eomt_format"] == "eomt-onnx-1" and metadata["eomt_batch"] == "dynamic"
    assert metadata["eomt_opset"] == "18" and metadata["eomt_img_size"] == "64"
    assert eomt.EoMTConfig.from_dict(json.loads(metadata["eomt_config"])) == tiny["model"].config
    for batch in (1, 3):
        images = _images(batch, seed=batch)
        with torch.inference_mode():
            want = tiny["model"](images)
            got = runner(images)
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and a.shape[0] == batch
            torch.testing.assert_close(a, b, atol=1e-4 * float(b.abs().max()), rtol=0)


def test_predictor_gives_identical_results_for_every_task(tiny):
    """Same panoptic maps and segments, instances and semantic maps (sliding windows: several per image)."""
    torch_predictor = eomt.Predictor(tiny["model"])
    onnx_predictor = eomt.Predictor(eomt.load_model(tiny["onnx"]))
    assert onnx_predictor.device == torch.device("cpu") and onnx_predictor.config == tiny["model"].config
    photos = [_photo(48, 80, seed=0), _photo(90, 40, seed=1), np.asarray(eomt.images.load_image(SAMPLE_IMAGE))]

    panoptic = [(a, b) for a, b in zip(torch_predictor.panoptic_batch(photos),
                                       onnx_predictor.panoptic_batch(photos), strict=True)]
    assert sum(len(a.segments) for a, _ in panoptic) >= 3  # maps with segments, not all void
    for want, got in panoptic:
        np.testing.assert_array_equal(got.segment_map, want.segment_map)
        np.testing.assert_array_equal(got.class_map, want.class_map)
        assert [{**s, "score": round(s["score"], 4)} for s in got.segments] == \
               [{**s, "score": round(s["score"], 4)} for s in want.segments]

    for want, got in zip(torch_predictor.instance(photos[2]), onnx_predictor.instance(photos[2]), strict=True):
        assert got["category_id"] == want["category_id"] and got["score"] == pytest.approx(want["score"], abs=1e-5)
        np.testing.assert_array_equal(got["mask"], want["mask"])
    for photo in photos:
        np.testing.assert_array_equal(onnx_predictor.semantic(photo), torch_predictor.semantic(photo))


def test_fixed_batch_export_runs_any_number_of_images_and_refuses_other_sizes(tiny, tmp_path):
    path = export(tiny["model"], tmp_path / "b2.onnx", batch=2)
    runner = eomt.load_model(path)
    assert runner.batch == 2
    images = _images(5)
    with torch.inference_mode():
        want, got = tiny["model"](images), runner(images)  # 3 runs of 2, the last padded
    for a, b in zip(got, want, strict=True):
        assert a.shape == b.shape
        torch.testing.assert_close(a, b, atol=1e-4 * float(b.abs().max()), rtol=0)
    with pytest.raises(ValueError, match=r"b2\.onnx was exported for images of shape \(B, 3, 64, 64\), got "
                                         r"\(1, 3, 96, 96\)"):
        runner(torch.rand(1, 3, 96, 96))


def test_predict_command_line_writes_the_same_picture(tiny, tmp_path, capsys):
    outputs = []
    for source in (tiny["checkpoint"], tiny["onnx"]):
        out = tmp_path / f"{source.suffix[1:]}.png"
        assert eomt_main(["predict", str(SAMPLE_IMAGE), "--model", str(source), "--out", str(out)]) == 0
        outputs.append(out.read_bytes())
    assert outputs[0] == outputs[1]
    printed = capsys.readouterr().out.split("\n")
    segments = [line for line in printed if line.startswith("   ")]
    assert segments and segments[: len(segments) // 2] == segments[len(segments) // 2:]


@pytest.fixture(scope="module")
def dumps(tiny):
    """predict_dump.py over 4 toy ADE20K images, once with the PyTorch checkpoint and once with its export."""
    data = write_toy_ade20k(tiny["folder"] / "ade", 4)
    folders = {}
    for kind, source in (("torch", tiny["checkpoint"]), ("onnx", tiny["onnx"])):
        folders[kind] = tiny["folder"] / kind
        argv = ["--data", str(data), "--out", str(folders[kind]), "--model", f"tiny={source}", "--workers", "0",
                "--batch-size", "3"]
        assert predict_dump.main(argv) == 0
    return folders


def test_dump_with_the_onnx_model_equals_the_dump_with_the_pytorch_model(dumps):
    folders = dumps
    files = {kind: sorted(p.relative_to(folder) for p in folder.rglob("*") if p.is_file())
             for kind, folder in folders.items()}
    assert files["torch"] == files["onnx"] and len(files["torch"]) > 20
    predictions = 0
    for name in files["torch"]:
        want, got = (folders[kind] / name for kind in ("torch", "onnx"))
        if name.name == "manifest.json":
            manifests = [json.loads(p.read_text()) for p in (want, got)]
            for manifest in manifests:
                manifest["dataset"].pop("root")
                for model in manifest["models"]:
                    model.pop("seconds_per_image")
                    assert model.pop("source").endswith((".safetensors", ".onnx"))
            assert manifests[0] == manifests[1]
        else:
            assert got.read_bytes() == want.read_bytes(), name
            predictions += "_pred_tiny" in name.name
    assert predictions == 4


def test_live_tab_runs_the_onnx_model_of_a_folder(dumps):
    photo = _photo(70, 50, seed=3)
    results = {kind: live.run_models(load_folder(folder), ["tiny"], photo) for kind, folder in dumps.items()}
    want, got = (results[kind].labels["tiny"] for kind in ("torch", "onnx"))
    assert not isinstance(got, str), got  # a map, not an error message
    np.testing.assert_array_equal(got.segment_map, want.segment_map)
    np.testing.assert_array_equal(got.class_map, want.class_map)
    assert len(got.segments) >= 1


def test_files_that_are_not_an_eomt_export_are_refused(tiny, tmp_path):
    foreign = tmp_path / "foreign.onnx"
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(graph), foreign)
    with pytest.raises(eomt.CheckpointError, match=r"foreign\.onnx: an ONNX model without EoMT metadata"):
        eomt.load_model(foreign)

    truncated = tmp_path / "truncated.onnx"
    truncated.write_bytes(tiny["onnx"].read_bytes()[:5000])
    with pytest.raises(eomt.CheckpointError, match=r"truncated\.onnx: ONNX Runtime cannot load this file"):
        eomt.load_model(truncated)

    renamed = tmp_path / "model.bin"  # found by its content, whatever its name
    renamed.write_bytes(tiny["onnx"].read_bytes())
    assert is_onnx_file(renamed) and not is_onnx_file(tiny["checkpoint"])
    assert isinstance(eomt.load_model(renamed), OnnxModel)

    with pytest.raises(eomt.CheckpointError, match="carries its own config, which differs from preset"):
        eomt.load_model(tiny["onnx"], preset="ade20k_panoptic_eomt_large_640")
    with pytest.raises(ValueError, match="computes in float32"):
        eomt.Predictor(eomt.load_model(tiny["onnx"]), dtype="bf16")
    with pytest.raises(ValueError, match="opsets 17"):
        export(tiny["model"], tmp_path / "old.onnx", opset=16)
    with pytest.raises(ValueError, match="batch must be 'dynamic' or a positive integer"):
        export(tiny["model"], tmp_path / "zero.onnx", batch=0)
    assert not (tmp_path / "old.onnx").exists() and not (tmp_path / "zero.onnx").exists()


def test_export_of_an_onnx_file_is_refused(tiny, tmp_path, capsys):
    assert eomt_main(["export", "--model", str(tiny["onnx"]), "--out", str(tmp_path / "again.onnx")]) == 2
    assert "already an ONNX model" in capsys.readouterr().err
