"""Loading and saving EoMT weights: every published format, strictly, with errors that name what is wrong.

Formats (told apart by key prefix):
    original  the official `pytorch_model.bin`: keys `network.*` (optionally inside {"state_dict": ...}),
              plus `criterion.*` training buffers, which are dropped
    plain     the same keys without `network.` (what `save_model` writes, with the config in its metadata)
    hf        Hugging Face transformers (`config.json` + `model.safetensors`): renamed keys, split q/k/v,
              mapped by the explicit tables `HF_RENAMES` / `HF_SPLITS` (DINOv2) and `HF_DINOV3_RENAMES`
An original-format file may hold delta weights (the published DINOv3 models): its backbone is then the
difference from Meta's pretrained DINOv3, which `backbone_weights` supplies (see `eomt.delta`).
"""

from __future__ import annotations

import json
import os
import re
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from eomt import delta
from eomt.config import EoMTConfig
from eomt.modeling import IMAGENET_MEAN, IMAGENET_STD, EoMT
from eomt.presets import (
    BACKBONES,
    DINOV3_BACKBONES,
    DINOV3_PRETRAINED,
    PRESETS,
    hub_repo,
    metadata_for_num_classes,
    preset_in,
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, or that does not fit the requested architecture."""


# (Hugging Face name, EoMT name). {i}: block or upscale-block index; {p}: weight or bias.
HF_HEAD_RENAMES = [
    ("query.weight", "q.weight"),
    ("class_predictor.{p}", "class_head.{p}"),
    ("mask_head.fc1.{p}", "mask_head.0.{p}"),
    ("mask_head.fc2.{p}", "mask_head.2.{p}"),
    ("mask_head.fc3.{p}", "mask_head.4.{p}"),
    ("upscale_block.block.{i}.conv1.{p}", "upscale.{i}.conv1.{p}"),
    ("upscale_block.block.{i}.conv2.{p}", "upscale.{i}.conv2.{p}"),
    ("upscale_block.block.{i}.layernorm2d.{p}", "upscale.{i}.norm.{p}"),
    ("attn_mask_probs", "attn_mask_probs"),
]
HF_RENAMES = [
    ("embeddings.cls_token", "encoder.backbone.cls_token"),
    ("embeddings.register_tokens", "encoder.backbone.reg_token"),
    ("embeddings.position_embeddings.weight", "encoder.backbone.pos_embed"),  # (N, D) there, (1, N, D) here
    ("embeddings.patch_embeddings.projection.{p}", "encoder.backbone.patch_embed.proj.{p}"),
    ("layers.{i}.norm1.{p}", "encoder.backbone.blocks.{i}.norm1.{p}"),
    ("layers.{i}.attention.out_proj.{p}", "encoder.backbone.blocks.{i}.attn.proj.{p}"),
    ("layers.{i}.layer_scale1.lambda1", "encoder.backbone.blocks.{i}.ls1.gamma"),
    ("layers.{i}.norm2.{p}", "encoder.backbone.blocks.{i}.norm2.{p}"),
    ("layers.{i}.mlp.fc1.{p}", "encoder.backbone.blocks.{i}.mlp.fc1.{p}"),
    ("layers.{i}.mlp.fc2.{p}", "encoder.backbone.blocks.{i}.mlp.fc2.{p}"),
    # Giant's SwiGLU: transformers 4.x packs both halves into one matrix as timm does; 5.x splits (HF_SPLITS).
    ("layers.{i}.mlp.weights_in.{p}", "encoder.backbone.blocks.{i}.mlp.fc1.{p}"),
    ("layers.{i}.mlp.weights_out.{p}", "encoder.backbone.blocks.{i}.mlp.fc2.{p}"),
    ("layers.{i}.mlp.down_proj.{p}", "encoder.backbone.blocks.{i}.mlp.fc2.{p}"),
    ("layers.{i}.layer_scale2.lambda1", "encoder.backbone.blocks.{i}.ls2.gamma"),
    ("layernorm.{p}", "encoder.backbone.norm.{p}"),
    *HF_HEAD_RENAMES,
]
# transformers' EomtDinov3ForUniversalSegmentation: the official DINOv3 names under other prefixes.
HF_DINOV3_RENAMES = [
    ("embeddings.cls_token", "encoder.backbone.patch_embed.cls_token"),
    ("embeddings.register_tokens", "encoder.backbone.patch_embed.register_tokens"),
    ("embeddings.patch_embeddings.{p}", "encoder.backbone.patch_embed.patch_embeddings.{p}"),
    *[(f"layers.{{i}}.{name}", f"encoder.backbone.blocks.{{i}}.{name}") for name in (
        "norm1.{p}", "attention.q_proj.{p}", "attention.k_proj.{p}", "attention.v_proj.{p}", "attention.o_proj.{p}",
        "layer_scale1.lambda1", "norm2.{p}", "mlp.up_proj.{p}", "mlp.down_proj.{p}", "layer_scale2.lambda1")],
    ("layernorm.{p}", "encoder.backbone.norm.{p}"),
    *HF_HEAD_RENAMES,
]
# EoMT tensors that Hugging Face stores in parts; the parts are concatenated along dim 0 in this order.
HF_SPLITS = [
    ("encoder.backbone.blocks.{i}.attn.qkv.{p}",
     ("layers.{i}.attention.q_proj.{p}", "layers.{i}.attention.k_proj.{p}", "layers.{i}.attention.v_proj.{p}")),
    # silu(gate) * up, the order of timm's packed fc1 halves.
    ("encoder.backbone.blocks.{i}.mlp.fc1.{p}", ("layers.{i}.mlp.gate_proj.{p}", "layers.{i}.mlp.up_proj.{p}")),
]
# Not learned, so the Hugging Face format leaves them out; also filled in when any other checkpoint lacks them.
CONSTANT_BUFFERS = {
    "encoder.pixel_mean": torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1),
    "encoder.pixel_std": torch.tensor(IMAGENET_STD).view(1, 3, 1, 1),
}
DROPPED_PREFIXES = ("criterion.",)  # the training loss's class weights
HF_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
CHECKPOINT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".safetensors")
CONFIG_METADATA_KEY = "eomt_config"


def _pattern(template: str) -> re.Pattern:
    regex = re.escape(template).replace(r"\{i\}", r"(?P<i>\d+)").replace(r"\{p\}", r"(?P<p>weight|bias)")
    return re.compile(regex + "$")


_RENAME_RULES = [(_pattern(hf), ours) for hf, ours in HF_RENAMES]
_DINOV3_RENAME_RULES = [(_pattern(hf), ours) for hf, ours in HF_DINOV3_RENAMES]
_SPLIT_RULES = [(_pattern(hf), ours, part, len(parts)) for ours, parts in HF_SPLITS
                for part, hf in enumerate(parts)]
_HF_DINOV3_KEY = re.compile(r"layers\.\d+\.attention\.o_proj\.")  # DINOv2's is out_proj


def hf_family(keys) -> str:
    """The backbone family of a Hugging Face EoMT state dict: 'dinov3' or 'dinov2'."""
    return "dinov3" if any(_HF_DINOV3_KEY.match(k) for k in keys) else "dinov2"


def hf_to_eomt(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Renames a Hugging Face state dict to EoMT names. Returns it and the HF keys that map to nothing
    (incomplete q/k/v or gate/up groups are left out, so they surface as missing keys)."""
    converted, parts, unknown = {}, {}, []
    rules = _DINOV3_RENAME_RULES if hf_family(state) == "dinov3" else _RENAME_RULES
    for key, tensor in state.items():
        for pattern, ours in rules:
            if match := pattern.match(key):
                converted[ours.format(**match.groupdict())] = tensor
                break
        else:
            for pattern, ours, part, count in _SPLIT_RULES:
                if match := pattern.match(key):
                    parts.setdefault(ours.format(**match.groupdict()), [None] * count)[part] = tensor
                    break
            else:
                unknown.append(key)
    for key, pieces in parts.items():
        if all(p is not None for p in pieces):
            converted[key] = torch.cat(pieces, dim=0)
    pos_embed = converted.get("encoder.backbone.pos_embed")
    if pos_embed is not None and pos_embed.ndim == 2:
        converted["encoder.backbone.pos_embed"] = pos_embed[None]
    return converted, unknown


def detect_format(keys) -> str:
    """'original' (network.*), 'hf' (embeddings.*, layers.*) or 'plain'."""
    keys = list(keys)
    if any(k.startswith("network.") for k in keys):
        return "original"
    if any(k.startswith(("embeddings.", "layers.")) for k in keys):
        return "hf"
    return "plain"


def to_eomt_keys(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str], str]:
    """Any supported state dict -> (EoMT-named tensors, keys that fit no EoMT name, detected format)."""
    fmt = detect_format(state)
    state = {k: v for k, v in state.items() if not k.startswith(DROPPED_PREFIXES)}
    if fmt == "hf":
        converted, unknown = hf_to_eomt(state)
    elif fmt == "original":
        converted = {k.removeprefix("network."): v for k, v in state.items() if k.startswith("network.")}
        unknown = [k for k in state if not k.startswith("network.")]
    else:
        converted, unknown = dict(state), []
    for key, value in CONSTANT_BUFFERS.items():
        converted.setdefault(key, value.clone())
    return converted, unknown, fmt


# ---------------------------------------------------------------------------------------------- reading files

def _is_safetensors(path: Path) -> bool:
    # An 8-byte little-endian header length followed by a JSON header, whatever the file is called.
    with open(path, "rb") as f:
        head = f.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < path.stat().st_size


def read_weights(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """The tensors of one checkpoint file and its metadata (safetensors only; {} otherwise)."""
    try:
        if _is_safetensors(path):
            with safe_open(str(path), framework="pt") as f:
                return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
        try:
            # mmap keeps a multi-GB checkpoint in the page cache instead of copying it into memory.
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            obj = torch.load(path, map_location="cpu", weights_only=True)  # legacy (non-zip) pickle
    except Exception as err:  # every reader failure means the same to the user
        raise CheckpointError(f"{path}: cannot read this checkpoint; the file is truncated, corrupt or not a "
                              f"PyTorch/safetensors checkpoint ({type(err).__name__}: {err})") from err
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict) or not obj:
        raise CheckpointError(f"{path}: expected a state dict (name -> tensor), found {type(obj).__name__}")
    not_tensors = [k for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CheckpointError(f"{path}: entries that are not tensors: {_names(not_tensors)}")
    return obj, {}


def _shard_names(index: Path) -> list[str]:
    """The shard files a model.safetensors.index.json names; each must be a plain file name in its folder (a
    name such as ../../x would read files outside it)."""
    try:
        weight_map = json.loads(index.read_text())["weight_map"]
        shards = sorted(set(weight_map.values()))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise CheckpointError(f"{index}: not a readable shard index ({type(err).__name__}: {err})") from None
    for shard in shards:
        if not isinstance(shard, str) or Path(shard).name != shard or shard in ("", ".", ".."):
            raise CheckpointError(f"{index}: shard {shard!r} is not a file name inside {index.parent}")
    return shards


def _read_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():  # a sharded save_pretrained
        state = {}
        for shard in _shard_names(index):
            state.update(read_weights(folder / shard)[0])
        return state, {}, index
    for name in HF_WEIGHT_FILES:
        if (folder / name).exists():
            return *read_weights(folder / name), folder / name
    raise CheckpointError(f"{folder}: a checkpoint folder needs one of {', '.join(HF_WEIGHT_FILES)} "
                          f"(and config.json for the Hugging Face format)")


# --------------------------------------------------------------------------------------------- the hub

@dataclass
class _Source:
    weights: dict[str, torch.Tensor]
    metadata: dict[str, str]
    hf_config: dict | None
    path: Path  # what error messages name
    name: str  # what a preset name is looked for in (the hub id or the path)


def _looks_like_repo_id(source: str) -> bool:
    return (re.fullmatch(r"[A-Za-z0-9][\w.-]*/[\w.-]+", source) is not None
            and not source.endswith(CHECKPOINT_SUFFIXES))


def _hub_unreachable() -> str | None:
    """Why the hub cannot be reached, or None. huggingface_hub itself retries for ~25 s before failing."""
    from huggingface_hub import constants

    if constants.HF_HUB_OFFLINE or os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes", "on"):
        return "HF_HUB_OFFLINE is set"
    host = urlparse(constants.ENDPOINT).hostname or "huggingface.co"
    try:
        socket.create_connection((host, 443), timeout=5).close()
    except OSError as err:
        return f"{host} unreachable: {err}"
    return None


def _download(repo_id: str, filenames: list[str], how: str | None = None) -> list[Path]:
    """The files from the local Hugging Face cache, else downloaded; offline, a CheckpointError at once whose
    text ends with `how` (what to do instead; by default: download by hand and pass the path as --model)."""
    from huggingface_hub import hf_hub_download

    try:
        return [Path(hf_hub_download(repo_id, name, local_files_only=True)) for name in filenames]
    except Exception:  # not cached yet
        pass
    name = repo_id.split("/")[-1]
    options = ""
    if name in PRESETS:
        options = f" --preset {name}" + (" --backbone-weights BACKBONE" if PRESETS[name].family == "dinov3" else "")
    urls = ", ".join(f"https://huggingface.co/{repo_id}/resolve/main/{f}" for f in filenames)
    how = how or (f"Download {urls} on a machine with internet access and pass the local path instead of the "
                  f"repo id, e.g. `python -m eomt predict IMAGE --model /path/to/{filenames[-1]}{options}` (for "
                  f"the Hugging Face format, pass the folder holding config.json and model.safetensors).")
    reason = _hub_unreachable()
    if reason:
        raise CheckpointError(f"{repo_id}: not in the local Hugging Face cache and the hub cannot be reached "
                              f"({reason}). {how}")
    try:
        return [Path(hf_hub_download(repo_id, f)) for f in filenames]
    except Exception as err:
        raise CheckpointError(f"{repo_id}: download failed ({type(err).__name__}: {err}). {how}") from err


def _open_source(source: str | os.PathLike) -> _Source:
    path = Path(source).expanduser()
    if path.is_dir():
        weights, metadata, weights_path = _read_folder(path)
        config_file = path / "config.json"
        hf_config = json.loads(config_file.read_text()) if config_file.exists() else None
        return _Source(weights, metadata, hf_config, weights_path, str(path.resolve()))
    if path.is_file():
        return _Source(*read_weights(path), None, path, str(path.resolve()))
    text = str(source)
    if text in PRESETS:
        text = hub_repo(text)
    if not _looks_like_repo_id(text):
        raise CheckpointError(f"{source}: no such file or directory")
    if preset_in(text.split("/")[-1]):
        (file,) = _download(text, ["pytorch_model.bin"])  # the official checkpoint
        return _Source(*read_weights(file), None, file, text)
    config_file, file = _download(text, ["config.json", "model.safetensors"])
    return _Source(*read_weights(file), json.loads(config_file.read_text()), file, text)


# ------------------------------------------------------------------------------------------ architecture

def config_from_hf(hf: dict, state: dict[str, torch.Tensor], name: str = "") -> EoMTConfig:
    """An EoMTConfig from a transformers EomtConfig or EomtDinov3Config dict; `state` (EoMT names) gives the
    MLP width where the HF config does not store it; `name` (hub id or path) may name the preset whose class
    metadata to use."""
    img_size = hf["image_size"][0] if isinstance(hf["image_size"], list | tuple) else hf["image_size"]
    patch_size = hf["patch_size"][0] if isinstance(hf["patch_size"], list | tuple) else hf["patch_size"]
    id2label = {int(k): v for k, v in hf.get("id2label", {}).items()}
    num_classes = len(id2label) or hf.get("num_labels") or state["class_head.weight"].shape[0] - 1
    dinov3 = hf.get("model_type") == "eomt_dinov3" or "encoder.backbone.patch_embed.cls_token" in state
    backbone, kwargs = _dinov3_backbone_from_hf(hf) if dinov3 else _dinov2_backbone_from_hf(hf, state)
    metadata = {}
    preset = preset_in(name)
    if preset and PRESETS[preset].num_classes == num_classes:
        known = PRESETS[preset]
        metadata = {"task": known.task, "class_names": known.class_names, "stuff_classes": known.stuff_classes,
                    "class_colors": known.class_colors}
    elif metadata_for_num_classes(num_classes):
        metadata = metadata_for_num_classes(num_classes)
        if hf.get("num_queries") == 100 and metadata["task"] == "panoptic":
            metadata["task"] = "semantic"  # the semantic checkpoints are the ones with 100 queries
    elif id2label:
        metadata = {"class_names": tuple(id2label[i] for i in sorted(id2label))}
    metadata.pop("num_classes", None)
    return EoMTConfig(backbone=backbone, img_size=img_size, num_classes=num_classes,
                      num_queries=hf.get("num_queries", 200), num_blocks=hf.get("num_blocks", 4),
                      patch_size=patch_size, backbone_kwargs=kwargs, **metadata)


def _dinov2_backbone_from_hf(hf: dict, state: dict[str, torch.Tensor]) -> tuple[str, dict]:
    dim, depth, heads = hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"]
    swiglu = bool(hf.get("use_swiglu_ffn", False))
    standard = {(384, 12, 6, False): "small", (768, 12, 12, False): "base", (1024, 24, 16, False): "large",
                (1536, 40, 24, True): "giant"}
    size = standard.get((dim, depth, heads, swiglu))
    fc1 = state.get("encoder.backbone.blocks.0.mlp.fc1.weight")
    kwargs = {}
    if size is None:
        size = "giant" if swiglu else "small"
        kwargs = {"depth": depth, "embed_dim": dim, "num_heads": heads}
        if fc1 is not None and (swiglu or fc1.shape[0] != 4 * dim):
            # timm sizes fc1 as int(dim * mlp_ratio); the half keeps float error from rounding it down.
            kwargs["mlp_ratio"] = (fc1.shape[0] + 0.5) / dim
    if hf.get("num_register_tokens", 4) != 4:
        kwargs["reg_tokens"] = hf["num_register_tokens"]
    return BACKBONES[size][0], kwargs


# EomtDinov3Config fields that eomt.dinov3 fixes to DINOv3's values.
_DINOV3_FIXED = {"num_register_tokens": 4, "query_bias": True, "key_bias": False, "value_bias": True,
                 "proj_bias": True, "mlp_bias": True, "use_gated_mlp": False, "hidden_act": "gelu"}


def _dinov3_backbone_from_hf(hf: dict) -> tuple[str, dict]:
    unsupported = {k: hf[k] for k, v in _DINOV3_FIXED.items() if k in hf and hf[k] != v}
    theta = (hf.get("rope_parameters") or {}).get("rope_theta", hf.get("rope_theta", 100.0))
    if theta != 100.0:
        unsupported["rope_theta"] = theta
    if unsupported:
        raise CheckpointError(f"EomtDinov3Config with {unsupported}: eomt builds DINOv3 as published "
                              f"({_DINOV3_FIXED}, rope_theta 100)")
    dim, depth, heads = hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"]
    mlp = hf.get("intermediate_size", 4 * dim)
    standard = {(384, 12, 6): "small", (768, 12, 12): "base", (1024, 24, 16): "large"}
    size = standard.get((dim, depth, heads))
    if size is not None and mlp == 4 * dim:
        return DINOV3_BACKBONES[size][0], {}
    kwargs = {"depth": depth, "embed_dim": dim, "num_heads": heads}
    if mlp != 4 * dim:
        kwargs["mlp_ratio"] = (mlp + 0.5) / dim  # int(dim * ratio) == mlp, whatever the float error
    return DINOV3_BACKBONES["small"][0], kwargs


def _choose_config(src: _Source, preset: str | None, config: EoMTConfig | None,
                   state: dict[str, torch.Tensor]) -> tuple[EoMTConfig, str]:
    """The architecture to build and, for messages, where it came from."""
    if config is not None:
        return config, "the given config"
    if preset is not None:
        # A preset may also be a JSON file of EoMTConfig.to_dict(): the way to describe an original-format
        # checkpoint of a model that is not in the zoo (a user's own training run).
        if preset not in PRESETS and preset.endswith(".json") and Path(preset).is_file():
            return EoMTConfig.from_dict(json.loads(Path(preset).read_text())), f"the config file {preset}"
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
        return PRESETS[preset], f"preset {preset!r}"
    if CONFIG_METADATA_KEY in src.metadata:
        return EoMTConfig.from_dict(json.loads(src.metadata[CONFIG_METADATA_KEY])), "the config stored in the file"
    if src.hf_config is not None:
        return config_from_hf(src.hf_config, state, src.name), "its config.json"
    name = preset_in(src.name)
    if name:
        return PRESETS[name], f"preset {name!r} (matched by name)"
    raise CheckpointError(f"{src.path}: cannot tell which architecture this checkpoint has (no config stored in "
                          f"it, no config.json, no preset name in its path). Pass preset=NAME (--preset NAME), "
                          f"one of: {', '.join(PRESETS)}; or a JSON file of EoMTConfig.to_dict() as the preset; "
                          f"or config=EoMTConfig(...).")


def _names(keys, limit: int = 12) -> str:
    keys = list(keys)
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")


def _check_fit(src: _Source, fmt: str, origin: str, cfg: EoMTConfig, state: dict[str, torch.Tensor],
               unknown: list[str], expected: dict[str, torch.Size]) -> None:
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected] + unknown
    mismatched = [k for k in expected if k in state and tuple(state[k].shape) != tuple(expected[k])]
    if not (missing or unexpected or mismatched):
        return
    lines = [f"{src.path} ({fmt} format) does not fit the architecture of {origin} ({cfg.backbone}"
             f"{' ' + str(cfg.backbone_kwargs) if cfg.backbone_kwargs else ''}, img_size {cfg.img_size}, "
             f"{cfg.num_classes} classes, {cfg.num_queries} queries, {cfg.num_blocks} blocks):"]
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): " + _names(
            f"{k} checkpoint {tuple(state[k].shape)} vs model {tuple(expected[k])}" for k in mismatched))
    if missing:
        lines.append(f"  missing keys ({len(missing)}): {_names(missing)}")
    if unexpected:
        lines.append(f"  unexpected keys ({len(unexpected)}): {_names(unexpected)}")

    def differs(key: str, dim: int) -> bool:
        return key in mismatched and state[key].shape[dim] != expected[key][dim]

    for cls_token in ("encoder.backbone.cls_token", "encoder.backbone.patch_embed.cls_token"):
        if differs(cls_token, -1):
            lines.append(f"  hint: the checkpoint's tokens are {state[cls_token].shape[-1]} wide, the model's "
                         f"{expected[cls_token][-1]}: another backbone size.")
    families = {name: "DINOv3" if "encoder.backbone.patch_embed.cls_token" in keys else "DINOv2"
                for name, keys in (("checkpoint", state), ("model", expected))}
    if families["checkpoint"] != families["model"]:
        lines.append(f"  hint: the checkpoint holds a {families['checkpoint']} backbone, the model a "
                     f"{families['model']}: pick a preset of that family (DINOv3 presets end in _dinov3).")
    if differs("encoder.backbone.pos_embed", 1):
        grid = int(round(state["encoder.backbone.pos_embed"].shape[1] ** 0.5))
        lines.append(f"  hint: the checkpoint's position embedding is for a {grid}x{grid} patch grid, i.e. "
                     f"img_size {grid * cfg.patch_size}; pick the preset with that size.")
    if differs("class_head.weight", 0):
        lines.append(f"  hint: the checkpoint predicts {state['class_head.weight'].shape[0] - 1} classes; "
                     f"load_class_head=False keeps a fresh class head for fine-tuning on other classes.")
    raise CheckpointError("\n".join(lines))


BackboneWeights = str | os.PathLike | Mapping[str, torch.Tensor]


def load_model(source: str | os.PathLike, preset: str | None = None, config: EoMTConfig | None = None,
               device: str | torch.device = "cpu", load_class_head: bool = True,
               backbone_weights: BackboneWeights | None = None) -> EoMT:
    """Builds an EoMT from a checkpoint (file, folder, hub repo id or preset name) and loads it strictly.

    The architecture comes from `config`, else `preset`, else the config stored in the file (save_model),
    else the folder's config.json (Hugging Face format), else the preset named in the source. Returns the
    model in eval mode on `device`; load_class_head=False leaves the class head freshly initialised.
    backbone_weights: the pretrained DINOv3 backbone a delta checkpoint (the published `*_dinov3` files) is
    relative to: a file or folder in Meta's or transformers' layout, a hub id such as
    facebook/dinov3-vitl16-pretrain-lvd1689m (downloaded when not cached), or `read_backbone`'s result.
    A delta file without it, or an absolute one with it, is a CheckpointError that says what to pass.
    An ONNX file from `python -m eomt export` gives an `eomt.onnx.OnnxModel` (ONNX Runtime) instead.
    """
    from eomt import onnx

    if onnx.is_onnx_file(source):
        if backbone_weights is not None:
            raise CheckpointError(f"{source}: an ONNX file holds the whole network, backbone included: drop "
                                  "backbone_weights (--backbone-weights)")
        return onnx.load(source, preset=preset, config=config, device=device, load_class_head=load_class_head)
    _refuse_published_delta_without_backbone(source, backbone_weights)
    src = _open_source(source)
    state, unknown, fmt = to_eomt_keys(src.weights)
    cfg, origin = _choose_config(src, preset, config, state)
    if fmt != "hf" and delta.is_delta(state):
        if backbone_weights is None:
            raise CheckpointError(f"{src.path}: {_needs_backbone(cfg)}")
        state = _add_backbone(src, state, backbone_weights)
    elif backbone_weights is not None:
        raise CheckpointError(f"{src.path} ({fmt} format) holds absolute weights (only delta checkpoints, whose "
                              f"encoder.pixel_std is 0, are relative to a backbone): drop backbone_weights "
                              f"(--backbone-weights)")
    with torch.device("meta"):  # no time spent initialising weights that the checkpoint replaces
        model = EoMT(cfg)
    expected = {k: v.shape for k, v in model.state_dict().items()}
    if not load_class_head:
        state = {k: v for k, v in state.items() if not k.startswith("class_head.")}
        expected = {k: v for k, v in expected.items() if not k.startswith("class_head.")}
    _check_fit(src, fmt, origin, cfg, state, unknown, expected)
    # Weights may be stored in half precision; the model computes in fp32 (autocast lowers it when asked).
    state = {k: v.float() if v.is_floating_point() else v for k, v in state.items()}
    model.load_state_dict(state, strict=load_class_head, assign=True)
    if not load_class_head:
        model.class_head.to_empty(device="cpu")
        model.class_head.reset_parameters()
    _rebuild_meta_buffers(model)
    return model.to(device).eval()


def _rebuild_meta_buffers(model: EoMT) -> None:
    """Buffers that no checkpoint holds (DINOv3's RoPE periods) are still on the meta device after loading."""
    for module in model.modules():
        if any(b.is_meta for b in module.buffers(recurse=False)) and hasattr(module, "init_non_persistent_buffers"):
            module.init_non_persistent_buffers()
    left = [name for name, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise RuntimeError(f"tensors left uninitialised after loading: {_names(left)}")


# -------------------------------------------------------------------------------- delta checkpoints

def _needs_backbone(cfg: EoMTConfig) -> str:
    """What a delta checkpoint of this architecture needs, and how to pass it."""
    hub_id = None if cfg.backbone_kwargs else DINOV3_PRETRAINED.get(cfg.backbone)
    which = hub_id or f"the pretrained {cfg.backbone} {cfg.backbone_kwargs} it was trained from"
    example = hub_id or "/path/to/model.safetensors"
    return (f"a delta checkpoint (its backbone is stored as the difference from the pretrained DINOv3 weights, "
            f"as in the published *_dinov3 models), so it needs the backbone it was trained from: {which}. Pass "
            f"backbone_weights='{example}' to eomt.load_model, or --backbone-weights {example} on the command line: "
            f"a hub id is downloaded when not cached (a gated repo: accept the DINOv3 license on its page and log "
            f"in with `hf auth login` or HF_TOKEN); a local file or folder of those weights works too (the hub's "
            f"model.safetensors, or Meta's dinov3_vit*16_pretrain_lvd1689m-*.pth).")


def _refuse_published_delta_without_backbone(source: str | os.PathLike, backbone_weights) -> None:
    """Fails before a download that could not be used: the zoo's DINOv3 files are all deltas."""
    text = str(source)
    if backbone_weights is not None or Path(text).expanduser().exists():
        return
    if text in PRESETS:
        name, text = text, hub_repo(text)
    else:
        name = preset_in(text.split("/")[-1]) if _looks_like_repo_id(text) else None
    if name is not None and PRESETS[name].family == "dinov3":
        raise CheckpointError(f"{text}: {_needs_backbone(PRESETS[name])}")


def read_backbone(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The pretrained DINOv3 backbone at `source` (a file or folder in Meta's or transformers' layout, or a hub
    id, downloaded when not cached) with EoMT names (`encoder.backbone.*`). Read once, it can be given as
    backbone_weights to several load_model calls."""
    path = Path(source).expanduser()
    if path.is_dir():
        weights, _, path = _read_folder(path)
    elif path.is_file():
        weights, _ = read_weights(path)
    elif _looks_like_repo_id(str(source)):
        how = (f"Download https://huggingface.co/{source}/resolve/main/model.safetensors (a gated repo: accept the "
               f"DINOv3 license on its page first) and pass its local path as backbone_weights "
               f"(--backbone-weights /path/to/model.safetensors).")
        (path,) = _download(str(source), ["model.safetensors"], how)
        weights, _ = read_weights(path)
    else:
        raise CheckpointError(f"{source}: no such file or directory (backbone weights)")
    layout = delta.backbone_layout(weights)
    if layout is None:
        raise CheckpointError(f"{path}: not a DINOv3 backbone in Meta's layout (cls_token, storage_tokens, "
                              f"blocks.N.attn.qkv) or transformers' (embeddings.cls_token, layer.N.*); keys: "
                              f"{_names(weights, 6)}")
    return delta.backbone_to_eomt(weights, layout)


def _backbone_state(backbone_weights: BackboneWeights) -> tuple[dict[str, torch.Tensor], str]:
    """The backbone tensors (EoMT names) and what messages call them."""
    if isinstance(backbone_weights, Mapping):
        return dict(backbone_weights), "the given backbone state dict"
    return read_backbone(backbone_weights), str(backbone_weights)


def _add_backbone(src: _Source, state: dict[str, torch.Tensor], backbone_weights: BackboneWeights):
    backbone, name = _backbone_state(backbone_weights)
    in_file = {k: tuple(v.shape) for k, v in state.items() if k.startswith(delta.BACKBONE_PREFIX)}
    given = {k: tuple(v.shape) for k, v in backbone.items()}
    problems = _pair_problems(in_file, given, "checkpoint", "backbone")
    if problems:
        hint = ""
        widths = [shapes.get("encoder.backbone.patch_embed.cls_token", (0,))[-1] for shapes in (in_file, given)]
        if widths[0] != widths[1]:
            hint = (f"\n  hint: the backbone's tokens are {widths[1]} wide, the checkpoint's {widths[0]}: another "
                    f"DINOv3 size; the checkpoint needs the backbone it was trained from")
        raise CheckpointError(f"{src.path} (delta checkpoint) and the backbone weights {name} do not fit "
                              f"together:\n" + "\n".join(problems) + hint)
    return delta.add_backbone(state, backbone)


def _pair_problems(a: dict[str, tuple], b: dict[str, tuple], a_name: str, b_name: str) -> list[str]:
    """Lines naming shape mismatches and keys only one of two state dicts (key -> shape) has."""
    mismatched = [f"{k} {a_name} {a[k]} vs {b_name} {b[k]}" for k in a if k in b and a[k] != b[k]]
    lines = []
    if mismatched:
        lines.append(f"  shape mismatches ({len(mismatched)}): {_names(mismatched)}")
    for keys, where in (([k for k in a if k not in b], f"missing from the {b_name}"),
                        ([k for k in b if k not in a], f"not in the {a_name}")):
        if keys:
            lines.append(f"  {where} ({len(keys)}): {_names(keys)}")
    return lines


def load_backbone_weights(model: EoMT, backbone_weights: BackboneWeights) -> None:
    """Copies a pretrained DINOv3 backbone into a new model's `encoder.backbone` (training from Meta's
    weights, as the official recipe starts); strict: every backbone tensor, same shapes."""
    cfg = model.config
    if cfg.family != "dinov3":
        raise CheckpointError(f"backbone_weights: pretrained backbones are supported for DINOv3 models, not "
                              f"{cfg.backbone}")
    backbone, name = _backbone_state(backbone_weights)
    expected = {k: tuple(v.shape) for k, v in model.state_dict().items() if k.startswith(delta.BACKBONE_PREFIX)}
    problems = _pair_problems(expected, {k: tuple(v.shape) for k, v in backbone.items()}, "model", "backbone")
    if problems:
        raise CheckpointError(f"{name}: these backbone weights do not fit {cfg.backbone} "
                              f"{cfg.backbone_kwargs}:\n" + "\n".join(problems))
    with torch.no_grad():
        for key, tensor in backbone.items():
            model.get_parameter(key).copy_(tensor)


def save_model(model: EoMT, path: str | os.PathLike) -> Path:
    """Writes the weights (plain EoMT names) and the config (JSON metadata) to one .safetensors file."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())})
    return path
