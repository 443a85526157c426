"""Loading and saving EoMT weights: every published format, strictly, with errors that name what is wrong.

Formats (told apart by key prefix):
    original  the official `pytorch_model.bin`: keys `network.*` (optionally inside {"state_dict": ...}),
              plus `criterion.*` training buffers, which are dropped
    plain     the same keys without `network.` (what `save_model` writes, with the config in its metadata)
    hf        Hugging Face transformers (`config.json` + `model.safetensors`): renamed keys, split q/k/v,
              mapped by the explicit table `HF_RENAMES` / `HF_SPLITS` below
"""

from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from eomt.config import EoMTConfig
from eomt.modeling import IMAGENET_MEAN, IMAGENET_STD, EoMT
from eomt.presets import (
    BACKBONES,
    HUB_ORGANISATION,
    PRESETS,
    metadata_for_num_classes,
    preset_in,
)


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, or that does not fit the requested architecture."""


# (Hugging Face name, EoMT name). {i}: block or upscale-block index; {p}: weight or bias.
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
_SPLIT_RULES = [(_pattern(hf), ours, part, len(parts)) for ours, parts in HF_SPLITS
                for part, hf in enumerate(parts)]


def hf_to_eomt(state: dict[str, torch.Tensor]) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Renames a Hugging Face state dict to EoMT names. Returns it and the HF keys that map to nothing
    (incomplete q/k/v or gate/up groups are left out, so they surface as missing keys)."""
    converted, parts, unknown = {}, {}, []
    for key, tensor in state.items():
        for pattern, ours in _RENAME_RULES:
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


def _read_folder(folder: Path) -> tuple[dict[str, torch.Tensor], dict[str, str], Path]:
    index = folder / "model.safetensors.index.json"
    if index.exists():  # a sharded save_pretrained
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        state = {}
        for shard in shards:
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


def _download(repo_id: str, filenames: list[str]) -> list[Path]:
    from huggingface_hub import hf_hub_download

    try:
        return [Path(hf_hub_download(repo_id, name, local_files_only=True)) for name in filenames]
    except Exception:  # not cached yet
        pass
    name = repo_id.split("/")[-1]
    how = (f"Download {', '.join(f'https://huggingface.co/{repo_id}/resolve/main/{f}' for f in filenames)} on a "
           f"machine with internet access and pass the local path instead of the repo id, e.g. "
           f"`python -m eomt predict IMAGE --model /path/to/{filenames[-1]}"
           + (f" --preset {name}`" if name in PRESETS else "`") + " (for the Hugging Face format, pass the "
           "folder holding config.json and model.safetensors).")
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
        text = f"{HUB_ORGANISATION}/{text}"
    if not _looks_like_repo_id(text):
        raise CheckpointError(f"{source}: no such file or directory")
    if preset_in(text.split("/")[-1]):
        (file,) = _download(text, ["pytorch_model.bin"])  # the official checkpoint
        return _Source(*read_weights(file), None, file, text)
    config_file, file = _download(text, ["config.json", "model.safetensors"])
    return _Source(*read_weights(file), json.loads(config_file.read_text()), file, text)


# ------------------------------------------------------------------------------------------ architecture

def config_from_hf(hf: dict, state: dict[str, torch.Tensor], name: str = "") -> EoMTConfig:
    """An EoMTConfig from a transformers EomtConfig dict; `state` (EoMT names) gives the MLP width, which
    the HF config does not store; `name` (hub id or path) may name the preset whose class metadata to use."""
    dim, depth, heads = hf["hidden_size"], hf["num_hidden_layers"], hf["num_attention_heads"]
    swiglu = bool(hf.get("use_swiglu_ffn", False))
    img_size = hf["image_size"][0] if isinstance(hf["image_size"], list | tuple) else hf["image_size"]
    patch_size = hf["patch_size"][0] if isinstance(hf["patch_size"], list | tuple) else hf["patch_size"]
    id2label = {int(k): v for k, v in hf.get("id2label", {}).items()}
    num_classes = len(id2label) or hf.get("num_labels") or state["class_head.weight"].shape[0] - 1
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
    return EoMTConfig(backbone=BACKBONES[size][0], img_size=img_size, num_classes=num_classes,
                      num_queries=hf.get("num_queries", 200), num_blocks=hf.get("num_blocks", 4),
                      patch_size=patch_size, backbone_kwargs=kwargs, **metadata)


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

    if differs("encoder.backbone.cls_token", -1):
        lines.append(f"  hint: the checkpoint's tokens are {state['encoder.backbone.cls_token'].shape[-1]} wide, "
                     f"the model's {expected['encoder.backbone.cls_token'][-1]}: another backbone size.")
    if differs("encoder.backbone.pos_embed", 1):
        grid = int(round(state["encoder.backbone.pos_embed"].shape[1] ** 0.5))
        lines.append(f"  hint: the checkpoint's position embedding is for a {grid}x{grid} patch grid, i.e. "
                     f"img_size {grid * cfg.patch_size}; pick the preset with that size.")
    if differs("class_head.weight", 0):
        lines.append(f"  hint: the checkpoint predicts {state['class_head.weight'].shape[0] - 1} classes; "
                     f"load_class_head=False keeps a fresh class head for fine-tuning on other classes.")
    raise CheckpointError("\n".join(lines))


def load_model(source: str | os.PathLike, preset: str | None = None, config: EoMTConfig | None = None,
               device: str | torch.device = "cpu", load_class_head: bool = True) -> EoMT:
    """Builds an EoMT from a checkpoint (file, folder, hub repo id or preset name) and loads it strictly.

    The architecture comes from `config`, else `preset`, else the config stored in the file (save_model),
    else the folder's config.json (Hugging Face format), else the preset named in the source. Returns the
    model in eval mode on `device`; load_class_head=False leaves the class head freshly initialised.
    An ONNX file from `python -m eomt export` gives an `eomt.onnx.OnnxModel` (ONNX Runtime) instead.
    """
    from eomt import onnx

    if onnx.is_onnx_file(source):
        return onnx.load(source, preset=preset, config=config, device=device, load_class_head=load_class_head)
    src = _open_source(source)
    state, unknown, fmt = to_eomt_keys(src.weights)
    cfg, origin = _choose_config(src, preset, config, state)
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
    return model.to(device).eval()


def save_model(model: EoMT, path: str | os.PathLike) -> Path:
    """Writes the weights (plain EoMT names) and the config (JSON metadata) to one .safetensors file."""
    path = Path(path)
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(path), metadata={"format": "pt", CONFIG_METADATA_KEY: json.dumps(model.config.to_dict())})
    return path
