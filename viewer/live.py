"""The live tab: run the folder's own checkpoints on an uploaded image, each on its task (panoptic segments,
semantic map or instances scored from PRESENCE_SCORE), and show the results in the same panels.

`eomt` (and with it torch) is imported on the first run only, so opening a folder never pays for it. Loaded
models are kept, a few at a time, for every session: they are read-only weights, not session state.
"""

from __future__ import annotations

import threading
import time
import warnings
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from dump.folder import model_task
from eomt.images import MAX_PIXELS, check_size, to_rgb_array, to_rgb_image
from viewer.labelmaps import LabelMap, label_map
from viewer.markup import text
from viewer.task_maps import instance_labels, semantic_labels

_MODELS_KEPT = 2  # an EoMT-L is ~1.3 GB in fp32
# Uploads are predicted and shown at most this long: a session keeps the photo and one map per model, so its memory
# stays bounded (about 30 MB per model) whatever the upload.
LIVE_MAX_SIDE = 1600
_models: OrderedDict = OrderedDict()
_lock = threading.Lock()


@dataclass(frozen=True)
class LiveResult:
    photo: np.ndarray  # (H, W, 3) uint8, as uploaded
    labels: dict[str, LabelMap | str]  # model -> its prediction, or why there is none
    seconds: dict[str, float]


def checkpoint_path(folder, model: str) -> Path | None:
    """The model's checkpoint when its manifest "source" is a path that exists here (as given, or relative to
    the output folder); None for hub ids and files that are not on this machine."""
    entry = next((m for m in folder.manifest["models"] if m.get("name") == model), None)
    source = entry.get("source") if entry else None
    if not source:
        return None
    for path in (Path(source).expanduser(), folder.root / source):
        if path.exists():
            return path
    return None


def available_models(folder) -> list[str]:
    return [m for m in folder.models if checkpoint_path(folder, m) is not None]


def unavailable_note(folder) -> str:
    missing = [m for m in folder.models if checkpoint_path(folder, m) is None]
    if not missing:
        return ""
    sources = ", ".join(
        f"{text(m)} ({text(next((e.get('source') for e in folder.manifest['models'] if e['name'] == m), '?'))})"
        for m in missing)
    return f"Not available locally (checkpoint not found on this machine): {sources}."


def _load(folder, model: str):
    import eomt  # deferred: torch loads only when someone runs a model

    path = checkpoint_path(folder, model)
    if path is None:
        raise FileNotFoundError(f"{model}: checkpoint not available locally")
    entry = next(m for m in folder.manifest["models"] if m["name"] == model)
    # A DINOv3 delta checkpoint needs the backbone the dump loaded it with (a file here, or a hub id).
    backbone = entry.get("backbone_weights")
    key = (str(path), entry.get("preset"), backbone)
    with _lock:
        if key in _models:
            _models.move_to_end(key)
            return _models[key]
        predictor = eomt.Predictor(eomt.load_model(str(path), preset=entry.get("preset"),
                                                   backbone_weights=backbone))
        _models[key] = predictor
        while len(_models) > _MODELS_KEPT:
            _models.popitem(last=False)
        return predictor


def prediction_labels(result) -> LabelMap:
    """A LabelMap from a predictor's panoptic result, in the COCO ids the dump writes."""
    return label_map(*result.coco())


def load_photo(source) -> np.ndarray:
    """An upload (a file path, or an array) as an RGB array at most LIVE_MAX_SIDE long, ValueError for one that
    is not an image or has more than MAX_PIXELS (known from the header, before decoding): a 2 MB PNG can hold
    12000 x 12000 pixels, and predicting at full size kept gigabytes per session."""
    if isinstance(source, np.ndarray):
        image = Image.fromarray(to_rgb_array(source))
    else:
        try:
            with warnings.catch_warnings():  # the size is checked here
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image = Image.open(source)
        except (OSError, Image.DecompressionBombError) as e:
            raise ValueError(f"the uploaded file is not an image this app can read ({type(e).__name__})") from None
        check_size(image.width, image.height, MAX_PIXELS, "the uploaded image")
        image.draft("RGB", (LIVE_MAX_SIDE, LIVE_MAX_SIDE))  # JPEG: decode at 1/2, 1/4 or 1/8 scale right away
    if max(image.size) > LIVE_MAX_SIDE:
        image = to_rgb_image(image)
        image.thumbnail((LIVE_MAX_SIDE, LIVE_MAX_SIDE), Image.BILINEAR)
    return to_rgb_array(image)


def predict(predictor, task: str, photo: np.ndarray) -> LabelMap:
    """The model's prediction on its task as a label map (as the folder's panels show it)."""
    if task == "semantic":
        return semantic_labels(predictor.semantic(photo).astype(np.uint8))
    if task == "instance":
        return instance_labels(predictor.instance(photo), photo.shape[:2])
    return prediction_labels(predictor.panoptic(photo))


def run_models(folder, models: list[str], photo: np.ndarray) -> LiveResult:
    """Runs each chosen model on the photo; a model that fails gets its error message instead of a map."""
    photo = np.asarray(photo)
    if photo.ndim == 2:
        photo = np.repeat(photo[:, :, None], 3, axis=2)
    photo = np.ascontiguousarray(photo[:, :, :3].astype(np.uint8))
    labels: dict[str, LabelMap | str] = {}
    seconds: dict[str, float] = {}
    for model in models:
        started = time.perf_counter()
        try:
            task = model_task(next(m for m in folder.manifest["models"] if m["name"] == model))
            labels[model] = predict(_load(folder, model), task, photo)
        except Exception as e:  # one broken checkpoint must not take the others down: show why instead
            labels[model] = f"{model}: {type(e).__name__}: {e}"
        seconds[model] = time.perf_counter() - started
    return LiveResult(photo, labels, seconds)
