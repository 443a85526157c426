"""Checkpoint loading: the full-size official layout, every supported format, and errors that name the problem."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

import eomt
from eomt.checkpoint import detect_format
from synthetic.models import confident_model, tiny_ade_config, tiny_config
from tests.oracles import hf_model, official_keys

ADE_L640 = "ade20k_panoptic_eomt_large_640"


@pytest.fixture(scope="module")
def official_l640(tmp_path_factory):
    """A full-size ADE20K ViT-L 640 checkpoint in the official layout: every documented key and shape
    (365 tensors plus the criterion buffer), zero weights except norms and a few recognisable tensors."""
    keys = official_keys(dim=1024, depth=24, num_patches=40 * 40, num_queries=200, num_classes=150, num_blocks=4)
    assert len(keys) == 365
    g = torch.Generator().manual_seed(0)
    state = {}
    for key, shape in keys.items():
        if key.endswith(("norm1.weight", "norm2.weight", "norm.weight", "ls1.gamma", "ls2.gamma")):
            state[key] = torch.ones(shape)
        elif key in ("network.q.weight", "network.class_head.bias", "network.encoder.backbone.pos_embed"):
            state[key] = torch.randn(shape, generator=g)
        else:
            state[key] = torch.zeros(shape)
    state["network.encoder.pixel_mean"] = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    state["network.encoder.pixel_std"] = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    state["criterion.empty_weight"] = torch.ones(151)
    path = tmp_path_factory.mktemp("hub") / ADE_L640 / "pytorch_model.bin"
    path.parent.mkdir()
    torch.save(state, path)
    return path, state


def test_full_size_official_checkpoint_loads_strictly_and_runs(official_l640):
    path, state = official_l640
    model = eomt.load_model(path, preset=ADE_L640)
    assert model.config == eomt.PRESETS[ADE_L640] and not model.training
    loaded = model.state_dict()
    assert set(loaded) == {k.removeprefix("network.") for k in state if k.startswith("network.")}
    for key in ("q.weight", "class_head.bias", "encoder.backbone.pos_embed"):
        torch.testing.assert_close(loaded[key], state["network." + key], atol=0, rtol=0)
    with torch.no_grad():
        mask_logits, class_logits = model(torch.rand(1, 3, 640, 640))
    assert mask_logits.shape == (1, 200, 160, 160) and class_logits.shape == (1, 200, 151)
    assert torch.isfinite(mask_logits).all() and torch.isfinite(class_logits).all()


def test_preset_is_found_from_the_path(official_l640):
    path, _ = official_l640  # .../ade20k_panoptic_eomt_large_640/pytorch_model.bin, as in the hub cache
    assert eomt.load_model(path).config == eomt.PRESETS[ADE_L640]


def test_checkpoint_for_another_preset_names_the_mismatch(official_l640):
    path, _ = official_l640
    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model(path, preset="ade20k_panoptic_eomt_large_1280")
    message = str(err.value)
    assert str(path) in message and "ade20k_panoptic_eomt_large_1280" in message
    assert "encoder.backbone.pos_embed checkpoint (1, 1600, 1024) vs model (1, 6400, 1024)" in message
    assert "img_size 640" in message  # the hint

    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model(path, preset="coco_panoptic_eomt_large_640")
    assert "class_head.weight checkpoint (151, 1024) vs model (134, 1024)" in str(err.value)
    assert "load_class_head=False" in str(err.value)

    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model(path, preset="ade20k_panoptic_eomt_giant_640")
    message = str(err.value)
    assert "missing keys (224): encoder.backbone.blocks.24.norm1.weight" in message
    assert "tokens are 1024 wide, the model's 1536" in message
    assert "position embedding" not in message and "classes;" not in message  # those fit


def _assert_same_weights(model, reference):
    want = reference.state_dict()
    got = model.state_dict()
    assert set(got) == set(want)
    for key in want:
        torch.testing.assert_close(got[key], want[key], atol=0, rtol=0)


def test_every_format_loads_the_same_weights(tmp_path):
    reference = confident_model(tiny_ade_config(), seed=3)
    config = reference.config
    network = {f"network.{k}": v for k, v in reference.state_dict().items()}

    torch.save({**network, "criterion.empty_weight": torch.ones(151)}, tmp_path / "official.bin")
    torch.save({"state_dict": network, "epoch": 3}, tmp_path / "lightning.ckpt")
    torch.save(reference.state_dict(), tmp_path / "plain.pth")
    eomt.save_model(reference, tmp_path / "saved.safetensors")

    for name in ("official.bin", "lightning.ckpt", "plain.pth"):
        _assert_same_weights(eomt.load_model(tmp_path / name, config=config), reference)
    saved = eomt.load_model(tmp_path / "saved.safetensors")  # the config travels in the metadata
    assert saved.config == config
    _assert_same_weights(saved, reference)
    shutil.copy(tmp_path / "saved.safetensors", tmp_path / "renamed.bin")  # recognised by content
    _assert_same_weights(eomt.load_model(tmp_path / "renamed.bin"), reference)


def test_hf_folder_with_pytorch_model_bin_and_a_known_class_count(tmp_path):
    reference = hf_model(32, 2, 2, 1, num_labels=150, num_queries=12)
    reference.save_pretrained(tmp_path / "safetensors")
    folder = tmp_path / "bin"
    folder.mkdir()
    shutil.copy(tmp_path / "safetensors" / "config.json", folder / "config.json")
    torch.save(reference.state_dict(), folder / "pytorch_model.bin")
    a, b = eomt.load_model(tmp_path / "safetensors"), eomt.load_model(folder)
    _assert_same_weights(a, b)
    # transformers' config.json only names the classes; 150 of them are ADE20K's, with its stuff split.
    ade = eomt.PRESETS[ADE_L640]
    assert a.config.stuff_classes == ade.stuff_classes and a.config.class_colors == ade.class_colors
    assert detect_format(reference.state_dict()) == "hf"


def test_half_precision_checkpoint_loads_in_float32(tmp_path):
    reference = eomt.EoMT(tiny_config())
    torch.save({k: v.half() for k, v in reference.state_dict().items()}, tmp_path / "half.pt")
    model = eomt.load_model(tmp_path / "half.pt", config=tiny_config())
    assert all(p.dtype == torch.float32 for p in model.parameters())
    torch.testing.assert_close(model.q.weight, reference.q.weight.half().float())


def test_load_class_head_false_keeps_a_fresh_head_for_other_classes(tmp_path):
    reference = eomt.EoMT(tiny_config())
    eomt.save_model(reference, tmp_path / "five.safetensors")
    model = eomt.load_model(tmp_path / "five.safetensors", config=tiny_config(num_classes=7), load_class_head=False)
    assert model.class_head.weight.shape == (8, 32) and model.class_head.weight.device.type == "cpu"
    torch.testing.assert_close(model.q.weight, reference.q.weight)
    with torch.no_grad():
        assert model(torch.rand(1, 3, 64, 64))[1].shape == (1, 10, 8)
    with pytest.raises(eomt.CheckpointError, match="class_head.weight checkpoint"):
        eomt.load_model(tmp_path / "five.safetensors", config=tiny_config(num_classes=7))


def test_missing_and_unexpected_keys_are_named(tmp_path):
    state = {f"network.{k}": v for k, v in eomt.EoMT(tiny_config()).state_dict().items()}
    del state["network.mask_head.2.bias"]
    state["network.extra_head.weight"] = torch.zeros(3)
    torch.save(state, tmp_path / "odd.bin")
    with pytest.raises(eomt.CheckpointError) as err:
        eomt.load_model(tmp_path / "odd.bin", config=tiny_config())
    message = str(err.value)
    assert str(tmp_path / "odd.bin") in message and "original format" in message
    assert "missing keys (1): mask_head.2.bias" in message and "unexpected keys (1): extra_head.weight" in message


def test_unreadable_sources_are_clear_errors(tmp_path):
    with pytest.raises(eomt.CheckpointError, match="no such file or directory"):
        eomt.load_model(tmp_path / "nowhere" / "model.bin", config=tiny_config())
    with pytest.raises(eomt.CheckpointError, match="no such file or directory"):
        eomt.load_model("missing.pth", config=tiny_config())

    model = eomt.EoMT(tiny_config())
    torch.save(model.state_dict(), tmp_path / "full.pt")
    eomt.save_model(model, tmp_path / "full.safetensors")
    for name in ("full.pt", "full.safetensors"):
        data = (tmp_path / name).read_bytes()
        (tmp_path / f"truncated_{name}").write_bytes(data[: len(data) // 2])
        with pytest.raises(eomt.CheckpointError, match="truncated, corrupt or not a PyTorch"):
            eomt.load_model(tmp_path / f"truncated_{name}", config=tiny_config())
    (tmp_path / "notes.bin").write_text("not a checkpoint")
    with pytest.raises(eomt.CheckpointError, match="notes.bin: cannot read"):
        eomt.load_model(tmp_path / "notes.bin", config=tiny_config())
    (tmp_path / "empty_folder").mkdir()
    with pytest.raises(eomt.CheckpointError, match="model.safetensors, pytorch_model.bin"):
        eomt.load_model(tmp_path / "empty_folder")


def test_unknown_architecture_says_what_to_pass(tmp_path):
    torch.save(eomt.EoMT(tiny_config()).state_dict(), tmp_path / "mystery.pt")
    with pytest.raises(eomt.CheckpointError, match="cannot tell which architecture.*preset=NAME"):
        eomt.load_model(tmp_path / "mystery.pt")
    with pytest.raises(ValueError, match="unknown preset 'ade20k_large'"):
        eomt.load_model(tmp_path / "mystery.pt", preset="ade20k_large")


def test_hub_id_offline_fails_at_once_with_instructions(tmp_path, monkeypatch):
    import huggingface_hub
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    real_download = huggingface_hub.hf_hub_download

    def cache_only(*args, **kwargs):
        assert kwargs.get("local_files_only"), "a test must never download"
        return real_download(*args, cache_dir=str(tmp_path / "cache"), **kwargs)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", cache_only)
    for source in (f"tue-mps/{ADE_L640}", ADE_L640):
        with pytest.raises(eomt.CheckpointError) as err:
            eomt.load_model(source)
        message = str(err.value)
        assert f"https://huggingface.co/tue-mps/{ADE_L640}/resolve/main/pytorch_model.bin" in message
        assert f"--model /path/to/pytorch_model.bin --preset {ADE_L640}" in message and "HF_HUB_OFFLINE" in message
    with pytest.raises(eomt.CheckpointError, match="config.json.*model.safetensors"):
        eomt.load_model("someone/my-eomt")


def test_saved_config_is_json_metadata(tmp_path):
    from safetensors import safe_open

    model = eomt.EoMT(tiny_ade_config())
    path = eomt.save_model(model, tmp_path / "m.safetensors")
    with safe_open(str(path), framework="pt") as f:
        stored = json.loads(f.metadata()["eomt_config"])
    assert eomt.EoMTConfig.from_dict(stored) == model.config
