"""DINOv3 EoMT: the network against transformers' EomtDinov3ForUniversalSegmentation (HF folders and the
official original format), delta checkpoints with their pretrained backbone (both backbone layouts), the
full-size official key layout, the presets, predictions end to end, the command lines and training."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import eomt
from eomt.presets import BACKBONE_PRESETS, DINOV3_PRETRAINED
from tests.oracles import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    hf_dinov3_backbone,
    hf_dinov3_model,
    hf_dinov3_to_original,
    hf_logits,
    hub_backbone_state,
    meta_backbone_state,
    official_delta,
    official_dinov3_keys,
)

STEP = 2.0 ** -10  # weights on this grid add and subtract exactly in float32


def tiny_dinov3_config(hidden=32, layers=2, heads=2, num_blocks=1, **overrides) -> eomt.EoMTConfig:
    fields = dict(backbone="vit_small_patch16_dinov3_qkvb", img_size=64, num_classes=5, num_queries=10,
                  num_blocks=num_blocks, backbone_kwargs={"depth": layers, "embed_dim": hidden, "num_heads": heads})
    return eomt.EoMTConfig(**{**fields, **overrides})


def _images(seed: int, batch: int = 2) -> torch.Tensor:
    return torch.rand(batch, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def _logits(model, images):
    with torch.no_grad():
        return model(images)


def _assert_same_weights(model, reference):
    want, got = reference.state_dict(), model.state_dict()
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=0, rtol=0, msg=key)


# -------------------------------------------------------------------------------------- vs transformers

# (hidden, layers, heads, num_blocks, intermediate): several depths, query blocks and an odd MLP width.
HF_CASES = [(32, 2, 2, 1, None), (48, 4, 3, 2, None), (32, 3, 2, 3, None), (64, 3, 4, 2, 96)]


@pytest.mark.parametrize("hidden,layers,heads,num_blocks,intermediate", HF_CASES)
def test_logits_match_transformers_from_hf_folder_and_original_file(tmp_path, hidden, layers, heads, num_blocks,
                                                                    intermediate):
    reference = hf_dinov3_model(hidden, layers, heads, num_blocks, intermediate=intermediate)
    images = _images(1)
    want_masks, want_classes = hf_logits(reference, images)

    reference.save_pretrained(tmp_path / "hf")
    from_folder = eomt.load_model(tmp_path / "hf")
    assert from_folder.config.family == "dinov3"
    torch.save(hf_dinov3_to_original(reference.state_dict()), tmp_path / "original.bin")
    kwargs = {"depth": layers, "embed_dim": hidden, "num_heads": heads}
    if intermediate:
        kwargs["mlp_ratio"] = intermediate / hidden
    config = tiny_dinov3_config(num_blocks=num_blocks, backbone_kwargs=kwargs)
    from_original = eomt.load_model(tmp_path / "original.bin", config=config)
    assert from_folder.config.backbone_kwargs["depth"] == layers

    for model in (from_folder, from_original):
        assert not model.training
        masks, classes = _logits(model, images)
        assert masks.shape == (2, 10, 16, 16) and classes.shape == (2, 10, 6)
        torch.testing.assert_close(masks, want_masks, atol=1e-4, rtol=0)
        torch.testing.assert_close(classes, want_classes, atol=1e-4, rtol=0)
    assert want_masks.abs().max() > 1  # a test on all-zero logits would prove nothing


def test_rope_reaches_only_the_patches_behind_the_queries():
    """RoPE rotates the last grid-size tokens, however many queries and prefix tokens precede them (a fixed
    count of 5 prefix tokens would rotate the wrong tokens once the queries are prepended)."""
    from eomt.dinov3 import rotate_patches

    x = torch.randn(1, 2, 7 + 16, 8)
    cos, sin = eomt.EoMT(tiny_dinov3_config(hidden=16, heads=2)).encoder.backbone.rope((4, 4))
    rotated = rotate_patches(x, cos, sin)
    torch.testing.assert_close(rotated[:, :, :7], x[:, :, :7], atol=0, rtol=0)
    # Rotation keeps norms, and a patch's rotation depends on its grid position only.
    torch.testing.assert_close(rotated.norm(dim=-1), x.norm(dim=-1))
    again = rotate_patches(torch.cat([torch.randn(1, 2, 3, 8), x[:, :, 7:]], dim=2), cos, sin)
    torch.testing.assert_close(again[:, :, 3:], rotated[:, :, 7:], atol=0, rtol=0)


def test_masked_attention_matches_transformers(tmp_path):
    """Probability 1 masks every query (no randomness). RoPE's training-time rescaling is switched off, as
    transformers' eval-mode model does not rescale."""
    reference = hf_dinov3_model(32, 3, 2, 2)
    with torch.no_grad():
        reference.attn_mask_probs.fill_(1.0)
    images = _images(3)
    want_masks, want_classes = hf_logits(reference, images)
    torch.save(hf_dinov3_to_original(reference.state_dict()), tmp_path / "original.bin")
    config = tiny_dinov3_config(num_blocks=2, backbone_kwargs={"depth": 3, "embed_dim": 32, "num_heads": 2,
                                                               "rope_rescale": None})
    model = eomt.load_model(tmp_path / "original.bin", config=config).train()
    with torch.no_grad():
        model.attn_mask_probs.fill_(1.0)
        masks, classes = model(images, return_intermediate=True)
        plain_masks, _ = model.eval()(images)
    assert len(masks) == 3
    torch.testing.assert_close(masks[-1], want_masks, atol=1e-4, rtol=0)
    torch.testing.assert_close(classes[-1], want_classes, atol=1e-4, rtol=0)
    assert (plain_masks - masks[-1]).abs().max() > 1e-2


def test_training_rescales_rope_coordinates_and_inference_does_not():
    model = eomt.EoMT(tiny_dinov3_config())
    rope = model.encoder.backbone.rope
    eval_cos, _ = rope.eval()((4, 4))
    torch.testing.assert_close(rope((4, 4))[0], eval_cos, atol=0, rtol=0)
    torch.manual_seed(0)
    train_cos, _ = rope.train()((4, 4))
    assert (train_cos - eval_cos).abs().max() > 1e-3
    # The first RoPE frequency, y axis: angle 2 pi * y / period_0 with y the patch centre in [-1, 1].
    torch.testing.assert_close(eval_cos[0, 0], torch.tensor(math.cos(2 * math.pi * (0.5 / 4 * 2 - 1))))
    gradients = eomt.EoMT(tiny_dinov3_config()).train()
    masks, classes = gradients(_images(0), return_intermediate=True)
    (sum(m.mean() for m in masks) + sum(c.mean() for c in classes)).backward()
    assert gradients.encoder.backbone.blocks[0].attention.k_proj.weight.grad.abs().sum() > 0


# ---------------------------------------------------------------------------------------- delta files

@pytest.fixture(scope="module")
def delta_case(tmp_path_factory):
    """A random EoMT-DINOv3, a random "pretrained" DINOv3 backbone of the same size in the hub's and Meta's
    layouts, the absolute original-format file and the delta file made from them as the official code would."""
    folder = tmp_path_factory.mktemp("delta")
    reference = hf_dinov3_model(32, 3, 2, 2, step=STEP, seed=4)
    backbone = hub_backbone_state(hf_dinov3_backbone(32, 3, 2, step=STEP, seed=5))
    (folder / "dinov3-hub").mkdir()
    save_file(backbone, str(folder / "dinov3-hub" / "model.safetensors"))
    torch.save(meta_backbone_state(backbone), folder / "dinov3_meta.pth")
    absolute = hf_dinov3_to_original(reference.state_dict())
    absolute["network.attn_mask_probs"].zero_()  # annealed, as released
    torch.save(absolute, folder / "absolute.bin")
    torch.save(official_delta(absolute, backbone), folder / "delta.bin")
    config = tiny_dinov3_config(num_blocks=2, backbone_kwargs={"depth": 3, "embed_dim": 32, "num_heads": 2})
    return folder, reference, config


def test_delta_file_with_its_backbone_gives_the_original_model_exactly(delta_case):
    folder, reference, config = delta_case
    absolute = eomt.load_model(folder / "absolute.bin", config=config)
    images = _images(6)
    want_masks, want_classes = hf_logits(reference, images)
    for backbone in (folder / "dinov3-hub" / "model.safetensors", folder / "dinov3-hub", folder / "dinov3_meta.pth",
                     eomt.read_backbone(folder / "dinov3_meta.pth")):
        model = eomt.load_model(folder / "delta.bin", config=config, backbone_weights=backbone)
        _assert_same_weights(model, absolute)
        masks, classes = _logits(model, images)
        torch.testing.assert_close(masks, _logits(absolute, images)[0], atol=0, rtol=0)
        torch.testing.assert_close(masks, want_masks, atol=1e-4, rtol=0)
        torch.testing.assert_close(classes, want_classes, atol=1e-4, rtol=0)
    assert float(model.attn_mask_probs.abs().sum()) == 0 and torch.equal(model.encoder.pixel_std, IMAGENET_STD)


def test_delta_file_without_backbone_says_which_to_pass(delta_case):
    folder, _, config = delta_case
    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model(folder / "delta.bin", config=config)
    message = str(err.value)
    assert str(folder / "delta.bin") in message and "delta checkpoint" in message
    assert "backbone_weights=" in message and "--backbone-weights" in message

    # With a published architecture, the message names the very backbone.
    with pytest.raises(eomt.CheckpointError, match="backbone_weights='facebook/dinov3-vitl16-pretrain-lvd1689m'"):
        eomt.load_model(folder / "delta.bin", preset="coco_panoptic_eomt_large_640_dinov3")
    # An absolute file does not want one.
    with pytest.raises(eomt.CheckpointError, match="absolute weights.*drop backbone_weights"):
        eomt.load_model(folder / "absolute.bin", config=config, backbone_weights=folder / "dinov3_meta.pth")


def test_backbone_of_another_size_names_the_mismatch(delta_case, tmp_path):
    folder, _, config = delta_case
    wider = hub_backbone_state(hf_dinov3_backbone(48, 3, 2))
    save_file(wider, str(tmp_path / "wider.safetensors"))
    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model(folder / "delta.bin", config=config, backbone_weights=tmp_path / "wider.safetensors")
    message = str(err.value)
    assert str(tmp_path / "wider.safetensors") in message and "do not fit" in message
    assert "encoder.backbone.patch_embed.cls_token checkpoint (1, 1, 32) vs backbone (1, 1, 48)" in message
    assert "tokens are 48 wide, the checkpoint's 32" in message

    deeper = hub_backbone_state(hf_dinov3_backbone(32, 4, 2))
    save_file(deeper, str(tmp_path / "deeper.safetensors"))
    with pytest.raises(eomt.CheckpointError, match=r"not in the checkpoint \(17\): encoder.backbone.blocks.3"):
        eomt.load_model(folder / "delta.bin", config=config, backbone_weights=tmp_path / "deeper.safetensors")

    torch.save({"something.else": torch.zeros(2)}, tmp_path / "other.pth")
    with pytest.raises(eomt.CheckpointError, match="other.pth: not a DINOv3 backbone"):
        eomt.load_model(folder / "delta.bin", config=config, backbone_weights=tmp_path / "other.pth")


def test_published_delta_and_backbone_hub_ids_offline(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    real_download = huggingface_hub.hf_hub_download
    asked = []

    def cache_only(repo_id, filename, **kwargs):
        assert kwargs.get("local_files_only"), "a test must never download"
        asked.append(repo_id)
        return real_download(repo_id, filename, cache_dir=str(tmp_path / "cache"), **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    # Without a backbone, a published DINOv3 model fails before any download: it is a delta file.
    for source in ("tue-mps/coco_panoptic_eomt_large_640_dinov3", "coco_instance_eomt_large_1280_dinov3"):
        with pytest.raises(eomt.CheckpointError, match="facebook/dinov3-vitl16-pretrain-lvd1689m"):
            eomt.load_model(source)
    with pytest.raises(eomt.CheckpointError, match="facebook/dinov3-vits16-pretrain-lvd1689m"):
        eomt.load_model("coco_panoptic_eomt_small_640_dinov3")
    assert asked == []
    # The backbone as a hub id: looked for in the cache, then a clear offline error.
    with pytest.raises(eomt.CheckpointError) as err:
        eomt.read_backbone("facebook/dinov3-vitl16-pretrain-lvd1689m")
    message = str(err.value)
    assert "HF_HUB_OFFLINE" in message and "--backbone-weights /path/to/model.safetensors" in message
    assert "https://huggingface.co/facebook/dinov3-vitl16-pretrain-lvd1689m/resolve/main/model.safetensors" in message
    # The older name of the semantic model reaches the hub repo's current name.
    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model("ade20k_semantic_eomt_large_512_dinov3", backbone_weights="facebook/dinov3-vitl16-x")
    assert "tue-mps/ade_semantic_eomt_large_512_dinov3" in str(err.value)


# ----------------------------------------------------------------------------------- full size, presets

def test_full_size_large_640_checkpoint_loads_strictly_and_runs(tmp_path):
    """The official key layout of coco_panoptic_eomt_large_640_dinov3 (436 tensors), zeros except norms, layer
    scales and a few recognisable tensors; half precision keeps the file small."""
    keys = official_dinov3_keys(dim=1024, depth=24, num_queries=200, num_classes=133, num_blocks=4)
    assert len(keys) == 436
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in keys.items():
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "lambda1")):
            state[key] = torch.ones(shape, dtype=torch.half)
        elif key in ("network.q.weight", "network.class_head.bias", "network.encoder.backbone.patch_embed.cls_token"):
            state[key] = torch.randn(shape, generator=g).half()
        else:
            state[key] = torch.zeros(shape, dtype=torch.half)
    state["network.encoder.pixel_mean"] = IMAGENET_MEAN.clone()
    state["network.encoder.pixel_std"] = IMAGENET_STD.clone()
    state["criterion.empty_weight"] = torch.ones(134)
    path = tmp_path / "coco_panoptic_eomt_large_640_dinov3" / "pytorch_model.bin"
    path.parent.mkdir()
    torch.save(state, path)
    del state
    model = eomt.load_model(path)  # the preset is found from the path
    assert model.config == eomt.PRESETS["coco_panoptic_eomt_large_640_dinov3"]
    assert len(model.state_dict()) == 436
    loaded = torch.load(path, weights_only=True, mmap=True)
    for key in ("q.weight", "class_head.bias", "encoder.backbone.patch_embed.cls_token"):
        torch.testing.assert_close(model.state_dict()[key], loaded["network." + key].float(), atol=0, rtol=0)
    with torch.no_grad():
        mask_logits, class_logits = model(torch.rand(1, 3, 640, 640))
    assert mask_logits.shape == (1, 200, 160, 160) and class_logits.shape == (1, 200, 134)
    assert torch.isfinite(mask_logits).all() and torch.isfinite(class_logits).all()

    with pytest.raises(eomt.CheckpointError) as err:  # a DINOv2 preset for it
        eomt.load_model(path, preset="coco_panoptic_eomt_large_640")
    assert "holds a DINOv3 backbone, the model a DINOv2" in str(err.value)


def test_meta_device_builds_recreate_the_buffers_no_file_holds(delta_case):
    folder, _, config = delta_case
    model = eomt.load_model(folder / "absolute.bin", config=config)
    for name, tensor in [*model.named_parameters(), *model.named_buffers()]:
        assert not tensor.is_meta, name
    periods = model.encoder.backbone.rope.periods
    head_dim = 16
    torch.testing.assert_close(periods, 100.0 ** (torch.arange(head_dim // 4) * 4 / head_dim))
    assert all(block.attention.k_proj.bias is None for block in model.encoder.backbone.blocks)  # zero k bias
    assert "encoder.backbone.rope.periods" not in model.state_dict()


DINOV3_ZOO = {  # hub name: (size, img_size, classes, queries, blocks, task)
    "coco_panoptic_eomt_small_640_dinov3": ("small", 640, 133, 200, 3, "panoptic"),
    "coco_panoptic_eomt_base_640_dinov3": ("base", 640, 133, 200, 3, "panoptic"),
    "coco_panoptic_eomt_large_640_dinov3": ("large", 640, 133, 200, 4, "panoptic"),
    "coco_panoptic_eomt_large_1280_dinov3": ("large", 1280, 133, 200, 4, "panoptic"),
    "ade_semantic_eomt_large_512_dinov3": ("large", 512, 150, 100, 4, "semantic"),
    "ade20k_semantic_eomt_large_512_dinov3": ("large", 512, 150, 100, 4, "semantic"),
    "coco_instance_eomt_large_640_dinov3": ("large", 640, 80, 200, 4, "instance"),
    "coco_instance_eomt_large_1280_dinov3": ("large", 1280, 80, 200, 4, "instance"),
}
DIMS = {"small": (384, 12), "base": (768, 12), "large": (1024, 24)}


@pytest.mark.parametrize("name", sorted(DINOV3_ZOO))
def test_presets_describe_the_dinov3_zoo(name):
    size, img_size, num_classes, num_queries, num_blocks, task = DINOV3_ZOO[name]
    config = eomt.PRESETS[name]
    assert config.backbone == f"vit_{size}_patch16_dinov3_qkvb" and config.family == "dinov3"
    assert (config.img_size, config.num_classes, config.num_queries, config.num_blocks, config.task) == (
        img_size, num_classes, num_queries, num_blocks, task)
    dataset = {"panoptic": "coco_panoptic_eomt_large_640", "instance": "coco_instance_eomt_large_640",
               "semantic": "ade20k_semantic_eomt_large_512"}[task]
    assert config.class_names == eomt.PRESETS[dataset].class_names
    assert config.stuff_classes == eomt.PRESETS[dataset].stuff_classes
    with torch.device("meta"):
        model = eomt.EoMT(config)
    dim, depth = DIMS[size]
    assert len(model.state_dict()) == 28 + 17 * depth and model.encoder.backbone.embed_dim == dim
    assert DINOV3_PRETRAINED[config.backbone] == f"facebook/dinov3-vit{size[0]}16-pretrain-lvd1689m"


def test_dinov3_preset_names_are_exactly_the_zoo():
    assert {name for name, config in eomt.PRESETS.items() if config.family == "dinov3"} == set(DINOV3_ZOO)


def test_backbone_presets_make_configs_of_ones_own():
    config = eomt.EoMTConfig(**BACKBONE_PRESETS["dinov3_base"], img_size=320, num_classes=20)
    assert config.family == "dinov3" and config.num_blocks == 3
    assert eomt.EoMTConfig.from_dict(config.to_dict()) == config
    with torch.device("meta"):
        model = eomt.EoMT(config)
    assert model.encoder.backbone.embed_dim == 768 and len(model.encoder.backbone.blocks) == 12
    assert eomt.EoMTConfig(**BACKBONE_PRESETS["dinov2_large"], img_size=640, num_classes=3).family == "dinov2"
    with pytest.raises(ValueError, match="unknown DINOv3 backbone 'vit_huge_patch16_dinov3_qkvb'"):
        eomt.EoMT(tiny_dinov3_config(backbone="vit_huge_patch16_dinov3_qkvb"))
    with pytest.raises(ValueError, match="bad backbone_kwargs"):
        eomt.EoMT(tiny_dinov3_config(backbone_kwargs={"depth": 2, "embed_dim": 32, "num_heads": 2, "qk_norm": 1}))


# --------------------------------------------------------------------------------- downstream, end to end

def test_predictions_match_transformers_end_to_end(tmp_path):
    """Same weights, same photo: our Predictor against transformers' processor + EomtDinov3 + post-processing,
    on sizes where transformers' resize (truncating) and the official one (rounding) agree."""
    from transformers import EomtImageProcessorPil

    size, stuff = 64, {3, 4}
    reference = hf_dinov3_model(32, 2, 2, 1, num_labels=6, num_queries=3, seed=3)
    with torch.no_grad():  # confident classes and saturated masks, so that there are segments to compare
        reference.class_predictor.weight.mul_(150.0)
        reference.mask_head.fc3.weight.mul_(300.0)
    reference.save_pretrained(tmp_path)
    predictor = eomt.Predictor(eomt.load_model(tmp_path), stuff_classes=stuff)
    padded = EomtImageProcessorPil(size={"shortest_edge": size, "longest_edge": size})
    windows = EomtImageProcessorPil(size={"shortest_edge": size})
    rng = np.random.default_rng(5)
    compared = 0
    for original in [(48, 64), (96, 64), (64, 64)]:
        photo = Image.fromarray(rng.integers(0, 256, (*original, 3), dtype=np.uint8))
        inputs = padded(images=[photo], do_pad=True, return_tensors="pt")
        with torch.no_grad():
            outputs = reference(pixel_values=inputs["pixel_values"])
        theirs = padded.post_process_panoptic_segmentation(outputs, target_sizes=[original],
                                                           stuff_classes=sorted(stuff))[0]
        ours = predictor.panoptic(photo)
        np.testing.assert_array_equal(ours.segment_map, theirs["segmentation"].long().numpy())
        assert [(s["id"], s["category_id"]) for s in ours.segments] == [
            (s["id"], s["label_id"]) for s in theirs["segments_info"]]
        compared += len(ours.segments)

        inputs = windows(images=[photo], do_split_image=True, return_tensors="pt")
        with torch.no_grad():
            outputs = reference(pixel_values=inputs["pixel_values"], patch_offsets=inputs["patch_offsets"])
        theirs = windows.post_process_semantic_segmentation(
            outputs, target_sizes=[original], size={"shortest_edge": size, "longest_edge": None})[0]
        assert (predictor.semantic(photo) == theirs.numpy()).mean() > 0.99
    assert compared >= 3


def test_predict_command_line_with_a_delta_checkpoint(delta_case, tmp_path, capsys):
    from eomt.__main__ import main

    folder, _, config = delta_case
    photo = tmp_path / "photo.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (40, 56, 3), dtype=np.uint8)).save(photo)
    (tmp_path / "config.json").write_text(json.dumps(config.to_dict()))
    args = ["predict", str(photo), "--model", str(folder / "delta.bin"), "--preset", str(tmp_path / "config.json"),
            "--out", str(tmp_path / "out.png"), "--task", "instance"]
    assert main(args) == 2
    assert "--backbone-weights" in capsys.readouterr().err
    assert main([*args, "--backbone-weights", str(folder / "dinov3_meta.pth")]) == 0
    assert "instance" in capsys.readouterr().out
    assert Image.open(tmp_path / "out.png").size == (56, 40)


# --------------------------------------------------------------------------------------------- training

def test_training_from_scratch_and_from_a_dinov3_checkpoint(delta_case, tmp_path):
    from segdata.scenes import write_scenes
    from training.__main__ import main as train_main
    from training.loop import TrainOptions, build_model, dataset_metadata

    folder, _, _ = delta_case
    scenes = write_scenes(tmp_path / "scenes", num_train=4, num_val=1, seed=2)
    common = ["--data", str(scenes), "--steps", "2", "--batch-size", "2", "--workers", "0", "--val-limit", "1",
              "--no-progress", "--img-size", "64", "--num-queries", "6", "--num-blocks", "1", "--threads", "2"]
    tiny = ["--backbone", "vit_small_patch16_dinov3_qkvb", "--depth", "3", "--dim", "32", "--heads", "2"]
    assert train_main([*common, *tiny, "--out", str(tmp_path / "scratch")]) == 0
    scratch = eomt.load_model(tmp_path / "scratch" / "model.safetensors")
    assert scratch.config.family == "dinov3" and scratch.config.num_classes == 150

    # A new network on the pretrained backbone: the backbone is the file's, exactly.
    options = TrainOptions(data=str(scenes), out=str(tmp_path / "unused"), backbone="vit_small_patch16_dinov3_qkvb",
                           depth=3, dim=32, heads=2, img_size=64, num_blocks=1,
                           backbone_weights=str(folder / "dinov3-hub"))
    model = build_model(options, dataset_metadata())
    pretrained = eomt.read_backbone(folder / "dinov3-hub")
    for key, tensor in pretrained.items():
        torch.testing.assert_close(model.state_dict()[key], tensor, atol=0, rtol=0)
    with pytest.raises(ValueError, match="pretrained backbones are supported for DINOv3 models"):
        build_model(TrainOptions(data="x", out="y", depth=3, dim=32, heads=2, img_size=64,
                                 backbone_weights=str(folder / "dinov3-hub")), dataset_metadata())

    # --init from a delta checkpoint and its backbone; the 5 classes are not the data's, so a new class head.
    shutil.copy(folder / "delta.bin", tmp_path / "coco_like.bin")
    config_file = tmp_path / "delta.json"
    config_file.write_text(json.dumps(
        tiny_dinov3_config(num_blocks=2, backbone_kwargs={"depth": 3, "embed_dim": 32, "num_heads": 2}).to_dict()))
    init = ["--init", str(tmp_path / "coco_like.bin"), "--preset", str(config_file)]
    assert train_main([*common, *init, "--out", str(tmp_path / "no_backbone")]) == 1
    assert train_main([*common, *init, "--backbone-weights", str(folder / "dinov3_meta.pth"),
                       "--out", str(tmp_path / "tuned")]) == 0
    tuned = eomt.load_model(tmp_path / "tuned" / "model.safetensors")
    assert tuned.config.family == "dinov3" and tuned.config.num_classes == 150 and tuned.config.num_blocks == 2
