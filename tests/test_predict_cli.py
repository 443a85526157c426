"""The Predictor on awkward images, its batch and device contract, and `python -m eomt predict`."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

import eomt
from eomt.__main__ import main
from eomt.images import to_rgb_array
from eomt.transforms import padded_size, resize_and_pad, window_starts
from synthetic.models import confident_model, tiny_ade_config
from tests.oracles import REPO, SAMPLE_IMAGE


@pytest.fixture(scope="module")
def model():
    return confident_model(tiny_ade_config(num_queries=3), seed=1)


@pytest.fixture(scope="module")
def predictor(model):
    return eomt.Predictor(model)


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory):
    return eomt.save_model(model, tmp_path_factory.mktemp("ckpt") / "tiny.safetensors")


def _photo(height: int, width: int, seed: int = 0) -> np.ndarray:
    """A smooth synthetic photo (gradients and blocks), so that predictions have structure."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    rgb = np.stack([xs * 255 // max(width, 1), ys * 255 // max(height, 1), (xs // 7 + ys // 5) % 2 * 200], -1)
    return (rgb + rng.integers(0, 30, rgb.shape)).clip(0, 255).astype(np.uint8)


def _check_panoptic(result, height, width):
    assert result.segment_map.shape == result.class_map.shape == (height, width)
    assert result.segment_map.dtype == result.class_map.dtype == np.int32
    assert [s["id"] for s in result.segments] == list(range(len(result.segments)))
    for segment in result.segments:
        inside = result.segment_map == segment["id"]
        assert segment["area"] == int(inside.sum()) > 0
        assert (result.class_map[inside] == segment["category_id"]).all()
    assert ((result.segment_map == -1) == (result.class_map == -1)).all()


def test_reference_sizes():
    assert padded_size(512, 683, 640) == (480, 640)  # round, not floor: 479.77 -> 480
    assert padded_size(1, 1, 640) == (640, 640)
    assert padded_size(5000, 100, 640) == (640, 13)
    assert padded_size(100000, 1, 640) == (640, 1)  # never 0 pixels
    assert window_starts(640, 640) == [0]
    assert window_starts(1000, 640) == [0, 360]  # 2 windows, overlap 280
    assert window_starts(1500, 640) == [0, 430, 860]  # 3 windows, overlap 420: step 640 - 210


@pytest.mark.parametrize("height,width", [(1, 1), (5000, 100), (100, 5000), (37, 53)])
def test_extreme_sizes_predict(predictor, height, width):
    image = _photo(height, width)
    _check_panoptic(predictor.panoptic(image), height, width)
    semantic = predictor.semantic(image)
    assert semantic.shape == (height, width) and semantic.dtype == np.int32
    assert semantic.min() >= 0 and semantic.max() < 150
    instances = predictor.instance(image)
    assert len(instances) == 100 and instances[0]["mask"].shape == (height, width)
    if height * width > 1:
        assert predictor.panoptic(image).segments  # something to check, not only void


def test_image_modes_are_converted(predictor, tmp_path):
    rgb = _photo(48, 80)
    gray = Image.fromarray(rgb[..., 0])
    cases = {
        "RGB": Image.fromarray(rgb), "L": gray, "LA": gray.convert("LA"), "RGBA": Image.fromarray(rgb).convert("RGBA"),
        "P": Image.fromarray(rgb).convert("P"), "CMYK": Image.fromarray(rgb).convert("CMYK"), "1": gray.convert("1"),
        "float": rgb / 255.0, "gray array": rgb[..., 0], "HxWx1": rgb[..., :1], "RGBA array": np.dstack([rgb, rgb[..., :1]]),
        "bool": rgb[..., 0] > 128, "tensor": torch.from_numpy(rgb),
    }
    for name, image in cases.items():
        converted = to_rgb_array(image)
        assert converted.shape == (48, 80, 3) and converted.dtype == np.uint8, name
        _check_panoptic(predictor.panoptic(image), 48, 80)
    assert (to_rgb_array(cases["RGBA"]) == rgb).all() and (to_rgb_array(cases["float"]) == rgb).all()
    assert (to_rgb_array(cases["L"]) == rgb[..., :1]).all()


def test_16_bit_png_is_scaled_not_clipped(predictor, tmp_path):
    gray8 = _photo(40, 60)[..., 0]
    Image.fromarray(gray8.astype(np.uint16) * 257).save(tmp_path / "deep.png")  # 16-bit grayscale PNG
    deep = eomt.images.load_image(tmp_path / "deep.png")
    assert deep.mode.startswith("I")
    np.testing.assert_array_equal(to_rgb_array(deep), np.repeat(gray8[..., None], 3, 2))
    np.testing.assert_array_equal(to_rgb_array(gray8.astype(np.uint16) * 257), np.repeat(gray8[..., None], 3, 2))
    ours, want = predictor.panoptic(deep), predictor.panoptic(Image.fromarray(gray8))
    np.testing.assert_array_equal(ours.segment_map, want.segment_map)


@pytest.mark.parametrize("image,message", [
    (np.zeros((0, 10, 3), np.uint8), "empty image"),
    (np.zeros((3, 20, 30), np.uint8), "expected an HxW or HxWxC image"),
    (np.full((20, 30, 3), 2.0), r"float images must hold finite values in \[0, 1\]"),
    (np.zeros((20, 30, 3), np.int32), "unsupported image dtype int32"),
    ([[0, 1], [2, 3]], "expected a PIL image or an HxWx3 array, got list"),
])
def test_bad_images_are_clear_errors(predictor, image, message):
    with pytest.raises(ValueError, match=message):
        predictor.panoptic(image)


def test_unreadable_image_file(tmp_path):
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    with pytest.raises(ValueError, match="broken.png: cannot read image"):
        eomt.images.load_image(tmp_path / "broken.png")
    with pytest.raises(ValueError, match="missing.jpg: cannot read image"):
        eomt.images.load_image(tmp_path / "missing.jpg")


def test_batch_and_dataloader_paths_equal_single_images(predictor):
    images = [_photo(60, 90, 1), _photo(120, 40, 2), _photo(64, 64, 3)]
    singles = [predictor.panoptic(i) for i in images]
    assert all(len(r.segments) >= 2 for r in singles)
    for batched, single in zip(predictor.panoptic_batch(images), singles, strict=True):
        np.testing.assert_array_equal(batched.segment_map, single.segment_map)
        assert [s["category_id"] for s in batched.segments] == [s["category_id"] for s in single.segments]

    # The dump's split: workers run resize_and_pad, the main process runs forward + panoptic_from_logits.
    prepared = [resize_and_pad(i, predictor.img_size) for i in images]
    mask_logits, class_logits = predictor.forward(torch.stack([p for p, _ in prepared]))
    assert mask_logits.dtype == class_logits.dtype == torch.float32 and mask_logits.device == predictor.device
    results = predictor.panoptic_from_logits(mask_logits, class_logits, [r for _, r in prepared],
                                             [i.shape[:2] for i in images])
    for result, single in zip(results, singles, strict=True):
        np.testing.assert_array_equal(result.segment_map, single.segment_map)

    for batched, single in zip(predictor.semantic_batch(images), [predictor.semantic(i) for i in images], strict=True):
        np.testing.assert_array_equal(batched, single)
    assert predictor.panoptic_batch([]) == [] and predictor.semantic_batch([]) == []


def test_precision_and_thresholds(predictor):
    model = predictor.model
    bf16 = eomt.Predictor(model, dtype=torch.bfloat16)
    batch = resize_and_pad(_photo(64, 64), 64)[0][None]
    mask_logits, class_logits = bf16.forward(batch)
    assert mask_logits.dtype == torch.float32
    full = predictor.forward(batch)[0]
    assert (mask_logits - full).abs().max() < 0.5 * full.abs().max()  # close, not equal: bf16
    with pytest.raises(ValueError, match="dtype must be one of"):
        eomt.Predictor(model, dtype="int8")
    assert predictor.stuff_classes == frozenset(model.config.stuff_classes)
    assert eomt.Predictor(model, stuff_classes=[1]).stuff_classes == {1}
    nothing = eomt.Predictor(model, score_threshold=1.0).panoptic(_photo(30, 30))
    assert nothing.segments == [] and (nothing.segment_map == -1).all()


@pytest.mark.parametrize("task", ["panoptic", "instance", "semantic"])
def test_cli_writes_a_coloured_prediction(checkpoint, tmp_path, capsys, task):
    out = tmp_path / f"{task}.png"
    assert main(["predict", str(SAMPLE_IMAGE), "--model", str(checkpoint), "--task", task, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    picture = np.asarray(Image.open(out))
    assert picture.shape == (512, 683, 3)
    assert f"(683x512), {task}" in printed
    ade = eomt.PRESETS["ade20k_panoptic_eomt_large_640"]
    palette = {tuple(c) for c in ade.class_colors} | {(0, 0, 0), (255, 255, 255)}
    assert {tuple(c) for c in np.unique(picture.reshape(-1, 3), axis=0)} <= palette
    if task != "instance":
        lines = printed.strip().splitlines()[1:]
        assert lines and all(any(name in line for name in ade.class_names) for line in lines)


def test_cli_errors_are_one_line_messages(checkpoint, tmp_path, capsys):
    assert main(["predict", str(SAMPLE_IMAGE), "--model", str(tmp_path / "none.bin"), "--out", "x.png"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "nothing.jpg"), "--model", str(checkpoint), "--out", "x.png"]) == 2
    assert "cannot read image" in capsys.readouterr().err


def test_python_dash_m_entry_point(checkpoint, tmp_path):
    out = tmp_path / "pred.png"
    done = subprocess.run([sys.executable, "-m", "eomt", "predict", str(SAMPLE_IMAGE), "--model", str(checkpoint),
                           "--out", str(out), "--device", "cpu"], cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert out.exists() and "panoptic" in done.stdout
