"""The network against transformers' EomtForUniversalSegmentation (same weights, both checkpoint formats),
masked attention, presets and class tables."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

import eomt
from eomt.classes import ade20k_classes, cityscapes_classes, coco_instance_classes, coco_panoptic_classes
from synthetic.models import tiny_config
from tests.oracles import REPO, hf_logits, hf_model, hf_to_original

# (hidden, layers, heads, num_blocks, swiglu): several depths and num_blocks, and giant's SwiGLU MLP.
HF_CASES = [(32, 2, 2, 1, False), (48, 4, 3, 2, False), (32, 3, 2, 3, False), (48, 3, 3, 2, True)]


@pytest.mark.parametrize("hidden,layers,heads,num_blocks,swiglu", HF_CASES)
def test_logits_match_transformers_in_both_formats(tmp_path, hidden, layers, heads, num_blocks, swiglu):
    reference = hf_model(hidden, layers, heads, num_blocks, swiglu=swiglu)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    want_masks, want_classes = hf_logits(reference, images)

    reference.save_pretrained(tmp_path / "hf")
    from_folder = eomt.load_model(tmp_path / "hf")
    torch.save(hf_to_original(reference.state_dict()), tmp_path / "original.bin")
    backbone = "vit_giant_patch14_reg4_dinov2" if swiglu else "vit_small_patch14_reg4_dinov2"
    kwargs = {"depth": layers, "embed_dim": hidden, "num_heads": heads}
    if swiglu:  # transformers sizes each SwiGLU half as 2/3 of 4x, rounded up to a multiple of 8;
        # timm's packed fc1 has int(hidden * mlp_ratio) rows (the 0.5 guards against rounding down)
        kwargs["mlp_ratio"] = (2 * ((int(hidden * 4 * 2 / 3) + 7) // 8 * 8) + 0.5) / hidden
    config = eomt.EoMTConfig(backbone=backbone, img_size=64, num_classes=5, num_queries=10,
                             num_blocks=num_blocks, backbone_kwargs=kwargs)
    from_original = eomt.load_model(tmp_path / "original.bin", config=config)
    models = [from_folder, from_original]
    if swiglu:  # transformers 4.x (the hub's model.safetensors) packs gate and up into weights_in
        models.append(eomt.load_model(_as_transformers_4(reference, tmp_path / "hf4")))

    for model in models:
        assert not model.training
        with torch.no_grad():
            masks, classes = model(images)
        assert masks.shape == (2, 10, 16, 16) and classes.shape == (2, 10, 6)
        torch.testing.assert_close(masks, want_masks, atol=1e-4, rtol=0)
        torch.testing.assert_close(classes, want_classes, atol=1e-4, rtol=0)
    assert want_masks.abs().max() > 1  # a test on all-zero logits would prove nothing


def _as_transformers_4(reference, folder):
    from safetensors.torch import save_file

    reference.save_pretrained(folder)
    state = {}
    for key, value in reference.state_dict().items():
        if ".mlp.up_proj." in key:
            continue
        if ".mlp.gate_proj." in key:
            key, value = key.replace("gate_proj", "weights_in"), torch.cat([value, reference.state_dict()[
                key.replace("gate_proj", "up_proj")]])
        state[key.replace("down_proj", "weights_out")] = value.contiguous()
    (folder / "model.safetensors").unlink()
    save_file(state, str(folder / "model.safetensors"))
    return folder


def test_reduced_depth_giant_loads_from_both_formats(tmp_path):
    """Giant's real width and SwiGLU sizes (fc1 1536->8192 packed, fc2 4096->1536), two blocks."""
    reference = hf_model(1536, 2, 24, 1, swiglu=True)
    images = torch.rand(1, 3, 64, 64, generator=torch.Generator().manual_seed(2))
    want_masks, want_classes = hf_logits(reference, images)
    reference.save_pretrained(tmp_path / "hf")
    torch.save(hf_to_original(reference.state_dict()), tmp_path / "giant.bin")
    config = eomt.EoMTConfig(backbone="vit_giant_patch14_reg4_dinov2", img_size=64, num_classes=5,
                             num_queries=10, num_blocks=1, backbone_kwargs={"depth": 2})
    for model in (eomt.load_model(tmp_path / "hf"), eomt.load_model(tmp_path / "giant.bin", config=config)):
        fc1 = model.encoder.backbone.blocks[0].mlp.fc1.weight
        assert tuple(fc1.shape) == (8192, 1536)
        with torch.no_grad():
            masks, classes = model(images)
        # Random giant-width weights give mask logits in the thousands, where one float32 step is 2.4e-4 and
        # the upscaler's own summation order (a matrix product, not a transposed conv) moves them by a few.
        torch.testing.assert_close(masks, want_masks, atol=1e-5 * float(want_masks.abs().max()), rtol=0)
        torch.testing.assert_close(classes, want_classes, atol=1e-4, rtol=0)


def test_masked_attention_matches_transformers(tmp_path):
    """transformers applies masked attention whenever attn_mask_probs > 0; ours only in training. With
    probability 1 every query is masked, so there is no randomness to differ."""
    reference = hf_model(32, 3, 2, 2)
    with torch.no_grad():
        reference.attn_mask_probs.fill_(1.0)
    images = torch.rand(2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    want_masks, want_classes = hf_logits(reference, images)
    reference.save_pretrained(tmp_path / "hf")
    model = eomt.load_model(tmp_path / "hf").train()
    with torch.no_grad():
        masks, classes = model(images, return_intermediate=True)
        plain_masks, _ = model.eval()(images)
    assert len(masks) == len(classes) == 3  # two query blocks + the final prediction
    torch.testing.assert_close(masks[-1], want_masks, atol=1e-4, rtol=0)
    torch.testing.assert_close(classes[-1], want_classes, atol=1e-4, rtol=0)
    assert (plain_masks - masks[-1]).abs().max() > 1e-2  # the mask really changed the result


def test_intermediate_predictions_and_masking_probabilities():
    model = eomt.EoMT(tiny_config(num_blocks=2, backbone_kwargs={"depth": 3, "embed_dim": 32, "num_heads": 2}))
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        for block in model.encoder.backbone.blocks:  # timm starts layer scales at 1e-5: attention barely counts
            block.ls1.gamma.fill_(1.0)
        model.eval()
        final = model(images)
        masks, classes = model(images, return_intermediate=True)
        assert len(masks) == len(classes) == 3
        torch.testing.assert_close(masks[-1], final[0])
        torch.testing.assert_close(classes[-1], final[1])
        assert all(m.shape == (2, 10, 16, 16) for m in masks)

        # Training with probabilities 0 is one plain forward (dropout is 0 in these backbones).
        model.train()
        model.attn_mask_probs.zero_()
        torch.testing.assert_close(model(images)[0], final[0])
        # Probability 1 restricts the queries of the query blocks: the first prediction is made before
        # any masking, so it is unchanged, later ones change.
        model.attn_mask_probs.fill_(1.0)
        masked, _ = model(images, return_intermediate=True)
        torch.testing.assert_close(masked[0], masks[0])
        assert (masked[-1] - final[0]).abs().max() > 1e-3


def test_gradients_flow_through_masked_attention():
    model = eomt.EoMT(tiny_config()).train()
    model.attn_mask_probs.fill_(0.5)
    masks, classes = model(torch.rand(2, 3, 64, 64), return_intermediate=True)
    (sum(m.mean() for m in masks) + sum(c.mean() for c in classes)).backward()
    assert model.q.weight.grad is not None and model.encoder.backbone.blocks[0].attn.qkv.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("shape", [(1, 3, 32, 32), (1, 1, 64, 64), (3, 64, 64), (1, 3, 64, 65)])
def test_wrong_input_shape_is_a_clear_error(shape):
    model = eomt.EoMT(tiny_config()).eval()
    with pytest.raises(ValueError, match=r"expects images of shape \(B, 3, 64, 64\)"):
        model(torch.rand(*shape))


def test_unsupported_architectures_are_refused():
    with pytest.raises(ValueError, match="num_blocks"):
        eomt.EoMT(tiny_config(num_blocks=3))
    with pytest.raises(ValueError, match="img_size"):
        tiny_config(img_size=70)
    with pytest.raises(ValueError, match="task"):
        tiny_config(task="depth")
    with pytest.raises(ValueError, match="class_names"):
        tiny_config(class_names=("a", "b"))


def test_config_round_trips_through_json():
    config = eomt.PRESETS["coco_panoptic_eomt_small_640_2x"]
    again = eomt.EoMTConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    assert tiny_config() == eomt.EoMTConfig.from_dict(json.loads(json.dumps(tiny_config().to_dict())))
    with pytest.raises(ValueError, match="unknown EoMTConfig fields: colour"):
        eomt.EoMTConfig.from_dict({**config.to_dict(), "colour": 1})
    assert len(tiny_config().colors()) == 5 and len(set(tiny_config().colors())) == 5


# Every published checkpoint of the official zoo: (backbone size, img_size, classes, queries, blocks, task).
ZOO = {
    "ade20k_panoptic_eomt_large_640": ("large", 640, 150, 200, 4, "panoptic"),
    "ade20k_panoptic_eomt_large_1280": ("large", 1280, 150, 200, 4, "panoptic"),
    "ade20k_panoptic_eomt_giant_640": ("giant", 640, 150, 200, 5, "panoptic"),
    "ade20k_panoptic_eomt_giant_1280": ("giant", 1280, 150, 200, 5, "panoptic"),
    "ade20k_semantic_eomt_large_512": ("large", 512, 150, 100, 4, "semantic"),
    "coco_panoptic_eomt_small_640_2x": ("small", 640, 133, 200, 3, "panoptic"),
    "coco_panoptic_eomt_base_640_2x": ("base", 640, 133, 200, 3, "panoptic"),
    "coco_panoptic_eomt_large_640": ("large", 640, 133, 200, 4, "panoptic"),
    "coco_panoptic_eomt_large_1280": ("large", 1280, 133, 200, 4, "panoptic"),
    "coco_panoptic_eomt_giant_640": ("giant", 640, 133, 200, 5, "panoptic"),
    "coco_panoptic_eomt_giant_1280": ("giant", 1280, 133, 200, 5, "panoptic"),
    "coco_instance_eomt_large_640": ("large", 640, 80, 200, 4, "instance"),
    "coco_instance_eomt_large_1280": ("large", 1280, 80, 200, 4, "instance"),
    "cityscapes_semantic_eomt_large_1024": ("large", 1024, 19, 100, 4, "semantic"),
}
DEPTH = {"small": 12, "base": 12, "large": 24, "giant": 40}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_presets_describe_the_model_zoo(name):
    size, img_size, num_classes, num_queries, num_blocks, task = ZOO[name]
    config = eomt.PRESETS[name]
    assert config.backbone == f"vit_{size}_patch14_reg4_dinov2" and config.patch_size == 16
    assert (config.img_size, config.num_classes, config.num_queries, config.num_blocks, config.task) == (
        img_size, num_classes, num_queries, num_blocks, task)
    assert len(config.class_names) == len(config.class_colors) == num_classes
    with torch.device("meta"):
        model = eomt.EoMT(config)
    state = model.state_dict()
    # 29 tensors outside the blocks (see the reference's key table), 14 per block.
    assert len(state) == 29 + 14 * DEPTH[size]
    assert state["encoder.backbone.pos_embed"].shape == (1, (img_size // 16) ** 2, model.encoder.backbone.embed_dim)


def test_preset_names_are_exactly_the_zoo():
    assert {name for name, config in eomt.PRESETS.items() if config.family == "dinov2"} == set(ZOO)


def test_class_tables():
    ade = ade20k_classes()
    assert eomt.PRESETS["ade20k_panoptic_eomt_large_640"].class_names == tuple(c.name for c in ade)
    assert len(eomt.PRESETS["ade20k_panoptic_eomt_large_640"].stuff_classes) == 50

    coco = coco_panoptic_classes()
    assert [c.id for c in coco] == list(range(133))
    assert sum(c.isthing for c in coco) == 80 and all(c.isthing == (c.id < 80) for c in coco)
    assert (coco[0].name, coco[0].coco_id, coco[0].color) == ("person", 1, (220, 20, 60))
    assert (coco[79].name, coco[79].coco_id) == ("toothbrush", 90)
    assert (coco[80].name, coco[80].coco_id, coco[80].color) == ("banner", 92, (255, 255, 128))
    assert (coco[132].name, coco[132].coco_id, coco[132].color) == ("rug-merged", 200, (250, 141, 255))
    assert len({c.coco_id for c in coco}) == 133
    assert eomt.PRESETS["coco_panoptic_eomt_large_640"].stuff_classes == tuple(range(80, 133))

    assert coco_instance_classes() == coco[:80]
    assert eomt.PRESETS["coco_instance_eomt_large_640"].stuff_classes == ()

    city = cityscapes_classes()
    assert [c.name for c in city][:3] == ["road", "sidewalk", "building"] and city[0].color == (128, 64, 128)
    assert [c.name for c in city if c.isthing] == ["person", "rider", "car", "truck", "bus", "train",
                                                    "motorcycle", "bicycle"]


def test_eomt_imports_without_torch_for_class_tables():
    code = "import sys, eomt; eomt.PRESETS; import eomt.classes; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
