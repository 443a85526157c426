"""EoMT as an ONNX file: the network (images -> mask and class logits) exported with `torch.onnx.export`, its
config in the file's metadata, and a runner that ONNX Runtime drives behind the same `eomt.Predictor`.

    python -m eomt export --model SOURCE --out model.onnx [--opset 18] [--batch dynamic|N]
    model = eomt.load_model("model.onnx")            # an OnnxModel: ONNX Runtime, CPU (CUDA when asked and present)
    eomt.Predictor(model).panoptic(image)             # pre- and post-processing as for the PyTorch model

onnx, onnxscript (export) and onnxruntime (running) are imported on first use only.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import numpy as np
import torch

from eomt.checkpoint import CheckpointError
from eomt.config import EoMTConfig

FORMAT = "eomt-onnx-1"  # metadata value that marks a file written by `export`; bump it when the contract changes
FORMAT_KEY = "eomt_format"
CONFIG_KEY = "eomt_config"  # EoMTConfig.to_dict() as JSON, as save_model stores it in safetensors
INPUT_NAME = "images"  # (B, 3, S, S) float32 in [0, 1]
OUTPUT_NAMES = ("mask_logits", "class_logits")
MIN_OPSET = 17  # LayerNormalization; the exporter cannot go lower
DEFAULT_OPSET = 18


def is_onnx_file(source: str | os.PathLike) -> bool:
    """Whether `source` is an existing file that holds an ONNX model: a `.onnx` name, or a protobuf whose first
    field is ModelProto.ir_version (tag byte 0x08) and that is neither safetensors, a zip nor a pickle."""
    path = Path(source).expanduser()
    if not path.is_file():
        return False
    if path.suffix.lower() == ".onnx":
        return True
    with open(path, "rb") as f:
        head = f.read(16)
    safetensors = len(head) >= 9 and head[8:9] == b"{"
    return head[:1] == b"\x08" and not safetensors


# -------------------------------------------------------------------------------------------------- export

def export(model: torch.nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
           batch: int | str = "dynamic") -> Path:
    """Writes `model` (an eomt.EoMT) as ONNX with its config in the metadata; returns the path.

    batch: "dynamic" (any batch size at run time) or a fixed N. Weights over 2 GB go to `<path>.data` beside it.
    The file appears complete or not at all (written under a temporary name, then renamed).
    """
    import onnx  # noqa: F401  (a clear ImportError before a long export when the package is missing)

    batch = _check_batch(batch)
    opset = int(opset)
    newest = _newest_opset()
    if not MIN_OPSET <= opset <= newest:
        raise ValueError(f"opset {opset}: EoMT exports to opsets {MIN_OPSET}..{newest} (LayerNormalization "
                         f"needs {MIN_OPSET})")
    config: EoMTConfig = model.config
    model = model.eval()
    device = next(model.parameters()).device
    size = config.img_size
    # An example batch of 2, not 1: torch.export would otherwise specialise the batch dimension to 1.
    example = torch.rand(2 if batch == "dynamic" else batch, 3, size, size, device=device)
    dynamic = {INPUT_NAME: {0: torch.export.Dim("batch", min=1)}} if batch == "dynamic" else None
    # The dynamo exporter: the TorchScript one bakes the traced batch size into the upscaler's reshapes.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on opset conversion; the check below decides
        program = torch.onnx.export(model, (example,), None, dynamo=True, verbose=False, opset_version=opset,
                                    input_names=[INPUT_NAME], output_names=list(OUTPUT_NAMES),
                                    dynamic_shapes=dynamic)
    got = program.model.opset_imports.get("", None)
    if got != opset:
        raise ValueError(f"opset {opset}: the exporter produced opset {got} instead; use opset {got} or higher")
    program.model.metadata_props.update({
        FORMAT_KEY: FORMAT,
        CONFIG_KEY: json.dumps(config.to_dict()),
        "eomt_img_size": str(size),
        "eomt_batch": str(batch),
        "eomt_opset": str(opset),
        "eomt_exported_with": f"torch {torch.__version__}",
    })
    return _save_atomically(program, Path(path))


def _check_batch(batch: int | str) -> int | str:
    if batch == "dynamic":
        return batch
    try:
        number = int(batch)
    except (TypeError, ValueError):
        number = 0
    if number < 1 or str(number) != str(batch).strip():
        raise ValueError(f"batch must be 'dynamic' or a positive integer, got {batch!r}")
    return number


def _newest_opset() -> int:
    import onnx

    return onnx.defs.onnx_opset_version()


def _save_atomically(program, path: Path) -> Path:
    # The .onnx file names its external data file, so both are written under their final names in a
    # temporary folder beside the target and moved in place: the data first, the model (what loaders open) last.
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        program.save(staging / path.name)
        data = path.with_name(path.name + ".data")
        written_data = staging / data.name
        if written_data.exists():
            os.replace(written_data, data)
        else:
            data.unlink(missing_ok=True)  # a stale data file of an earlier, larger export
        os.replace(staging / path.name, path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return path


# -------------------------------------------------------------------------------------------------- running

class OnnxModel:
    """An exported EoMT run by ONNX Runtime, in the shape `eomt.Predictor` expects of a network: `.config`,
    `.device`, `.eval()`, and `model(images)` with images (B, 3, S, S) float in [0, 1] returning torch tensors
    (mask_logits, class_logits) on `.device`.

    device: "cpu", or "cuda[:N]" for ONNX Runtime's CUDA provider (onnxruntime-gpu); without it, a warning and
    the CPU. threads: intra-op threads, default torch.get_num_threads() (as many as PyTorch would use).
    spinning: whether idle ONNX Runtime threads spin waiting for work; off by default, because spinning threads
    take the cores from any other work on the machine, and then from each other (bench/inference.py --ort-variants).
    optimization: ONNX Runtime's graph optimisation level, "disable", "basic", "extended" or "all".
    """

    def __init__(self, path: str | os.PathLike, device: str | torch.device = "cpu", threads: int | None = None,
                 spinning: bool = False, optimization: str = "all"):
        import onnxruntime as ort

        self.path = Path(path).expanduser()
        self.device = torch.device(device)
        providers = ["CPUExecutionProvider"]
        if self.device.type == "cuda":
            if "CUDAExecutionProvider" in ort.get_available_providers():
                providers.insert(0, ("CUDAExecutionProvider", {"device_id": self.device.index or 0}))
            else:
                warnings.warn(f"{self.path}: this onnxruntime has no CUDA provider (install onnxruntime-gpu); "
                              "running on the CPU", stacklevel=2)
                self.device = torch.device("cpu")
        elif self.device.type != "cpu":
            raise ValueError(f"device {device}: an ONNX model runs on cpu or cuda")
        levels = {"disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
                  "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                  "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
                  "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL}
        if optimization not in levels:
            raise ValueError(f"optimization must be one of {', '.join(levels)}, got {optimization!r}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = levels[optimization]
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spinning else "0")
        if not self.path.is_file():
            raise CheckpointError(f"{self.path}: no such file")
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=providers)
        except Exception as err:  # every reader failure means the same to the user
            first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise CheckpointError(f"{self.path}: ONNX Runtime cannot load this file; it is truncated, corrupt or "
                                  f"not an ONNX model ({first_line})") from err
        self.config, self.batch = self._read_metadata(self.session.get_modelmeta().custom_metadata_map)
        self._check_signature()

    def _read_metadata(self, metadata: dict[str, str]) -> tuple[EoMTConfig, int | None]:
        if FORMAT_KEY not in metadata:
            raise CheckpointError(f"{self.path}: an ONNX model without EoMT metadata (exported by something "
                                  "else?); export it with `python -m eomt export`, which stores the config the "
                                  "predictor needs")
        if metadata[FORMAT_KEY] != FORMAT:
            raise CheckpointError(f"{self.path}: EoMT ONNX format {metadata[FORMAT_KEY]!r}; this version reads "
                                  f"{FORMAT!r}: export the model again")
        try:
            config = EoMTConfig.from_dict(json.loads(metadata[CONFIG_KEY]))
            batch = metadata["eomt_batch"]
            return config, None if batch == "dynamic" else int(batch)
        except (KeyError, ValueError, TypeError) as err:
            raise CheckpointError(f"{self.path}: broken EoMT metadata ({type(err).__name__}: {err})") from None

    def _check_signature(self) -> None:
        inputs = [i.name for i in self.session.get_inputs()]
        outputs = [o.name for o in self.session.get_outputs()]
        if inputs != [INPUT_NAME] or outputs != list(OUTPUT_NAMES):
            raise CheckpointError(f"{self.path}: inputs {inputs} and outputs {outputs}; an EoMT export has "
                                  f"[{INPUT_NAME!r}] and {list(OUTPUT_NAMES)}")

    def eval(self) -> OnnxModel:
        return self

    def __repr__(self) -> str:
        batch = "dynamic" if self.batch is None else self.batch
        return f"OnnxModel({str(self.path)!r}, img_size={self.config.img_size}, batch={batch}, device={self.device})"

    def __call__(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        size = self.config.img_size
        if images.ndim != 4 or tuple(images.shape[1:]) != (3, size, size):
            raise ValueError(f"{self.path} was exported for images of shape (B, 3, {size}, {size}), got "
                             f"{tuple(images.shape)}")
        pixels = images.detach().to("cpu", torch.float32).contiguous().numpy()
        if self.batch is None or len(pixels) == self.batch:
            outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: pixels})
        else:
            outputs = self._run_in_fixed_batches(pixels)
        return tuple(torch.from_numpy(o).to(self.device) for o in outputs)

    def _run_in_fixed_batches(self, pixels: np.ndarray) -> list[np.ndarray]:
        # A file exported for batch N runs N images at a time; the last run is padded with blank images.
        parts = []
        for start in range(0, len(pixels), self.batch):
            chunk = pixels[start:start + self.batch]
            padding = self.batch - len(chunk)
            if padding:
                chunk = np.concatenate([chunk, np.zeros((padding, *chunk.shape[1:]), chunk.dtype)])
            outputs = self.session.run(list(OUTPUT_NAMES), {INPUT_NAME: chunk})
            parts.append([o[: len(o) - padding] for o in outputs])
        return [np.concatenate(column) for column in zip(*parts, strict=True)]


def load(source: str | os.PathLike, preset: str | None = None, config: EoMTConfig | None = None,
         device: str | torch.device = "cpu", load_class_head: bool = True, **options) -> OnnxModel:
    """What `eomt.load_model` returns for an ONNX file. The architecture is the one stored in the file: a preset
    or config that differs from it is refused; `options` go to OnnxModel (threads, spinning, optimization)."""
    if not load_class_head:
        raise CheckpointError(f"{source}: an ONNX model is for inference; load_class_head=False (fine-tuning) "
                              "needs the PyTorch checkpoint")
    model = OnnxModel(source, device=device, **options)
    wanted = config
    if preset is not None:
        from eomt.presets import PRESETS

        if preset in PRESETS:
            wanted = PRESETS[preset]
        elif preset.endswith(".json") and Path(preset).is_file():  # a config file, as load_model accepts
            wanted = EoMTConfig.from_dict(json.loads(Path(preset).read_text()))
        else:
            raise ValueError(f"unknown preset {preset!r}; presets: {', '.join(PRESETS)}")
    if wanted is not None and wanted != model.config:
        raise CheckpointError(f"{model.path}: the file carries its own config, which differs from "
                              f"{'preset ' + repr(preset) if preset else 'the given config'}; leave it out")
    return model
