"""COCO panoptic format: RGB PNGs of segment ids plus a JSON of categories and per-image segments_info.

This is what panopticapi, detectron2 and Mask2Former read, so everything written here can be checked with
panopticapi's `pq_compute(gt_json, pred_json, gt_folder, pred_folder)`. `pq_compute` below is the same evaluation
(same checks, same numbers) on top of metrics.pq, with null instead of a crash where panopticapi divides by zero.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
from PIL import Image, UnidentifiedImageError

from metrics import pq, pq_hotcoco

T = TypeVar("T")

MAX_ID = 256**3 - 1  # three 8-bit channels


class CocoPanopticError(ValueError):
    """Unusable COCO panoptic input; the message names the file or image and says what is wrong."""


def id2rgb(ids):
    """Segment ids -> colours: R = id % 256, G = id // 256 % 256, B = id // 65536. An int gives an (r, g, b)
    tuple, an array of shape S an array of shape S + (3,) of uint8."""
    if isinstance(ids, (int, np.integer)):
        if not 0 <= ids <= MAX_ID:
            raise ValueError(f"segment id {ids} does not fit in an RGB PNG (0..{MAX_ID})")
        return int(ids) % 256, int(ids) // 256 % 256, int(ids) // 65536
    ids = np.asarray(ids)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_ID):
        raise ValueError(f"segment ids must be in 0..{MAX_ID}, got {ids.min()}..{ids.max()}")
    ids = ids.astype(np.uint32)
    return np.stack([ids & 255, (ids >> 8) & 255, ids >> 16], axis=-1).astype(np.uint8)


def rgb2id(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) colours -> int32 segment ids (the inverse of id2rgb)."""
    rgb = np.asarray(rgb).astype(np.int32)
    return rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)


def read_png(path: str | os.PathLike) -> np.ndarray:
    """A panoptic PNG as an (H, W) int32 id map."""
    try:
        with Image.open(path) as image:
            if image.mode not in ("RGB", "RGBA", "P"):
                raise CocoPanopticError(f"{path}: a panoptic PNG must be RGB, this one is mode {image.mode}")
            rgb = image if image.mode == "RGB" else image.convert("RGB")  # drops alpha, expands a palette
            # PIL holds an RGB pixel as 4 bytes, R, G, B and a pad byte. Read as little-endian uint32 with the pad
            # masked off, that is the id: one pass, where rgb2id widens and shifts each channel.
            packed = np.frombuffer(rgb.tobytes("raw", "RGBX"), dtype="<u4")
            width, height = rgb.size
    except FileNotFoundError:
        raise CocoPanopticError(f"{path}: file not found") from None
    except (OSError, UnidentifiedImageError) as e:
        raise CocoPanopticError(f"{path}: cannot read PNG ({e})") from None
    return (packed & np.uint32(MAX_ID)).view(np.int32).reshape(height, width)


def areas_and_bboxes(segment_map: np.ndarray, ids: Sequence[int]) -> tuple[list[int], list[list[int]]]:
    """Pixel count and COCO bbox [x, y, width, height] of each id in `ids` (distinct, positive); an absent id gets
    0 and [0, 0, 0, 0].

    One pass over the pixels marks which rows and columns each segment touches, instead of one mask per segment.
    """
    height, width = segment_map.shape
    ids = np.asarray(ids, dtype=np.int64)
    index = pq.segment_indices(segment_map, ids, unknown=len(ids) + 1).reshape(height, width)
    areas = np.bincount(index.ravel(), minlength=len(ids) + 2)
    in_row = np.zeros((len(ids) + 2, height), dtype=bool)
    in_row[index, np.arange(height)[:, None]] = True
    in_column = np.zeros((len(ids) + 2, width), dtype=bool)
    in_column[index, np.arange(width)[None, :]] = True

    area_list, bbox_list = [], []
    for k in range(1, len(ids) + 1):
        if areas[k] == 0:
            area_list.append(0)
            bbox_list.append([0, 0, 0, 0])
            continue
        ys, xs = np.flatnonzero(in_row[k]), np.flatnonzero(in_column[k])
        area_list.append(int(areas[k]))
        bbox_list.append([int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)])
    return area_list, bbox_list


def load_json(path: str | os.PathLike, error: type[ValueError] = ValueError):
    """The parsed JSON file; `error` naming the file when it is missing or not JSON."""
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise error(f"{path}: file not found") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path}: not a readable JSON file ({e})") from None


def read_json(path: str | os.PathLike) -> dict:
    """A COCO panoptic JSON, checked for the keys evaluation needs."""
    document = load_json(path, CocoPanopticError)
    if not isinstance(document, dict) or not isinstance(document.get("annotations"), list):
        raise CocoPanopticError(f"{path}: a COCO panoptic JSON needs an 'annotations' list")
    for number, annotation in enumerate(document["annotations"]):
        if not isinstance(annotation, dict) or not {"image_id", "file_name", "segments_info"} <= annotation.keys():
            raise CocoPanopticError(f"{path}: every annotation needs 'image_id', 'file_name' and 'segments_info'")
        _check_annotation(path, number, annotation)
    return document


def _is_integer(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_annotation(path, number: int, annotation: dict) -> None:
    """The field types evaluation relies on, each wrong one a one-line error naming the file, the image and the
    field. panopticapi checks none of them: it crashes with a traceback, or (a string "area") computes nonsense."""
    image_id = annotation["image_id"]
    if not (_is_integer(image_id) or isinstance(image_id, str)):
        raise CocoPanopticError(f"{path}: annotation {number}: 'image_id' must be an integer or a string, got "
                                f"{image_id!r}")
    where = f"{path}: image {image_id!r}"
    if not isinstance(annotation["file_name"], str):
        raise CocoPanopticError(f"{where}: 'file_name' must be a string, got {annotation['file_name']!r}")
    segments = annotation["segments_info"]
    if not isinstance(segments, list) or not all(isinstance(s, dict) for s in segments):
        raise CocoPanopticError(f"{where}: 'segments_info' must be a list of segments, got {str(segments)[:80]}")
    for k, segment in enumerate(segments):
        for field in ("id", "category_id"):
            if not _is_integer(segment.get(field)):
                raise CocoPanopticError(f"{where}: segments_info[{k}]: '{field}' must be an integer, got "
                                        f"{segment.get(field, 'nothing')!r}")
        if segment.get("iscrowd", 0) not in (0, 1) or isinstance(segment.get("iscrowd"), bool):
            raise CocoPanopticError(f"{where}: segments_info[{k}]: 'iscrowd' must be 0 or 1, got "
                                    f"{segment['iscrowd']!r}")
        area = segment.get("area", 0)
        if not isinstance(area, int | float) or isinstance(area, bool) or not math.isfinite(area) or area < 0:
            raise CocoPanopticError(f"{where}: segments_info[{k}]: 'area' must be a non-negative number, got "
                                    f"{area!r}")


def default_folder(json_path: str | os.PathLike) -> Path:
    """panopticapi's convention: the PNGs of x/panoptic_val.json are in x/panoptic_val/."""
    path = Path(json_path)
    return path.with_suffix("") if path.suffix == ".json" else path


def _categories(gt_json: dict, gt_json_path) -> dict[int, bool]:
    categories = gt_json.get("categories")
    if not isinstance(categories, list) or not categories:
        raise CocoPanopticError(f"{gt_json_path}: the ground truth JSON needs a non-empty 'categories' list")
    try:
        return {c["id"]: bool(c["isthing"]) for c in categories}
    except (KeyError, TypeError):
        raise CocoPanopticError(f"{gt_json_path}: every category needs 'id' and 'isthing'") from None


@dataclass(frozen=True)
class Evaluation:
    """A ground truth and a prediction JSON + PNG folder, checked as a whole: their categories ({id: isthing}, in
    the JSON's order) and (gt annotation, pred annotation) per image, in the ground truth's order."""

    categories: dict[int, bool]
    pairs: list[tuple[dict, dict]]
    gt_folder: Path
    pred_folder: Path


def open_evaluation(gt_json_path: str | os.PathLike, pred_json_path: str | os.PathLike,
                    gt_folder: str | os.PathLike | None = None, pred_folder: str | os.PathLike | None = None
                    ) -> Evaluation:
    """Reads and checks both JSONs and the folders, with panopticapi's messages (CocoPanopticError)."""
    gt_json, pred_json = read_json(gt_json_path), read_json(pred_json_path)
    gt_folder = Path(gt_folder) if gt_folder is not None else default_folder(gt_json_path)
    pred_folder = Path(pred_folder) if pred_folder is not None else default_folder(pred_json_path)
    if not gt_folder.is_dir():
        raise CocoPanopticError(f"Folder {gt_folder} with ground truth segmentations doesn't exist")
    if not pred_folder.is_dir():
        raise CocoPanopticError(f"Folder {pred_folder} with predicted segmentations doesn't exist")
    categories = _categories(gt_json, gt_json_path)
    predictions = {a["image_id"]: a for a in pred_json["annotations"]}
    missing = [a["image_id"] for a in gt_json["annotations"] if a["image_id"] not in predictions]
    if missing:
        raise CocoPanopticError(f"no prediction for the image with id: {missing[0]}"
                                + (f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""))
    pairs = [(a, predictions[a["image_id"]]) for a in gt_json["annotations"]]
    return Evaluation(categories, pairs, gt_folder, pred_folder)


def _png_path(folder: Path, annotation: dict) -> Path:
    name = annotation["file_name"]
    if not isinstance(name, str) or Path(name).is_absolute() or ".." in Path(name).parts:
        raise CocoPanopticError(f"In the image with ID {annotation['image_id']} file_name {name!r} is not a path "
                                f"inside {folder}")
    return folder / name


def read_pair(evaluation: Evaluation, gt_annotation: dict, pred_annotation: dict) -> tuple:
    """(image_id, gt_map, gt_segments, pred_map, pred_segments) of one image, its categories checked."""
    image_id = gt_annotation["image_id"]
    for which, annotation in (("ground truth", gt_annotation), ("predicted", pred_annotation)):
        for segment in annotation["segments_info"]:
            if segment.get("category_id") not in evaluation.categories:
                raise CocoPanopticError(f"In the image with ID {image_id} {which} segment with ID "
                                        f"{segment.get('id')} has unknown category_id {segment.get('category_id')}")
    gt_map = read_png(_png_path(evaluation.gt_folder, gt_annotation))
    pred_map = read_png(_png_path(evaluation.pred_folder, pred_annotation))
    return image_id, gt_map, gt_annotation["segments_info"], pred_map, pred_annotation["segments_info"]


@contextmanager
def in_image(image_id):
    """Turns a PanopticFormatError raised inside into a CocoPanopticError naming the image."""
    try:
        yield
    except pq.PanopticFormatError as e:
        raise CocoPanopticError(f"In the image with ID {image_id} {e}") from None


def _pair_counts(pair: tuple) -> tuple[object, dict[int, pq.CategoryCounts]]:
    image_id, gt_map, gt_segments, pred_map, pred_segments = pair
    with in_image(image_id):
        return image_id, pq.image_counts(gt_map, gt_segments, pred_map, pred_segments, gt_areas_from_json=True)


def available_cores() -> int:
    """CPU cores this process may run on."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def map_pairs(function: Callable[[tuple], T], evaluation: Evaluation, workers: int | None = None) -> list[T]:
    """[function(read_pair's tuple)] of every image, in the ground truth's order, on `workers` threads (default:
    every available core; PNG decoding and numpy's pixel passes release the GIL). The first error in image order
    is raised, and the images not started yet are dropped."""
    pool = ThreadPoolExecutor(max_workers=max(1, workers or available_cores()))
    try:
        return list(pool.map(lambda pair: function(read_pair(evaluation, *pair)), evaluation.pairs))
    finally:
        pool.shutdown(cancel_futures=True)


def counts_per_image(evaluation: Evaluation, workers: int | None = None) -> list[tuple[object, dict]]:
    """[(image_id, pq.image_counts)] of every image, in the ground truth's order, counted on `workers` threads
    (map_pairs)."""
    return map_pairs(_pair_counts, evaluation, workers)


def image_counts_of_files(gt_json_path: str | os.PathLike, pred_json_path: str | os.PathLike,
                          gt_folder: str | os.PathLike | None = None, pred_folder: str | os.PathLike | None = None,
                          workers: int | None = None) -> tuple[dict[int, bool], dict]:
    """The categories and {image_id: pq.image_counts} of every image, as pq_compute counts them."""
    evaluation = open_evaluation(gt_json_path, pred_json_path, gt_folder, pred_folder)
    return evaluation.categories, dict(counts_per_image(evaluation, workers))


def pq_result(per_image: list[tuple[object, dict]], categories: dict[int, bool], with_per_image: bool = False,
              summed: Mapping[int, pq.CategoryCounts] | None = None) -> dict:
    """pq_compute's result from [(image_id, counts)] (see pq_compute); `summed`: the counts summed over the
    images when another engine counted them."""
    summary = pq.pq_summary(summed if summed is not None else pq.sum_counts(c for _, c in per_image), categories)
    result = {group: summary[group] for group in ("All", "Things", "Stuff")}
    result["per_class"] = {k: {m: v[m] for m in ("pq", "sq", "rq")} for k, v in summary["per_class"].items()}
    if with_per_image:
        result["per_image"] = {}
        for image_id, counts in per_image:
            overall = pq.pq_summary(counts, categories)["All"]
            result["per_image"][image_id] = overall if overall["n"] else None
    return result


def pq_compute(gt_json_path: str | os.PathLike, pred_json_path: str | os.PathLike,
               gt_folder: str | os.PathLike | None = None, pred_folder: str | os.PathLike | None = None,
               per_image: bool = False, workers: int | None = None, engine: str = "auto") -> dict:
    """panopticapi's evaluation of a prediction JSON + PNG folder against a ground truth one.

    Returns {"All", "Things", "Stuff": {pq, sq, rq, n}, "per_class": {id: {pq, sq, rq}}} (active categories only),
    plus "per_image": {image_id: {pq, sq, rq, n} or None} when asked. Ground-truth areas come from the JSON, as in
    panopticapi. Raises CocoPanopticError with panopticapi's message for the inputs panopticapi rejects, and for
    two it lets through silently (a gt segment of an unknown category, maps of different sizes).

    engine "auto" has hotcoco count the dataset-level numbers when it is installed and no per-image output is
    asked (same numbers, bit for bit; see metrics.pq_hotcoco; its threads use every available core). Otherwise,
    and always with engine "numpy", metrics.pq counts image by image on `workers` threads (default: every
    available core).
    """
    if engine not in ("auto", "numpy"):
        raise ValueError(f"engine must be 'auto' or 'numpy', not {engine!r}")
    evaluation = open_evaluation(gt_json_path, pred_json_path, gt_folder, pred_folder)
    if engine == "auto" and not per_image:
        summed = pq_hotcoco.dataset_counts(gt_json_path, pred_json_path, evaluation.pairs, evaluation.categories,
                                           evaluation.gt_folder, evaluation.pred_folder)
        if summed is not None:
            return pq_result([], evaluation.categories, summed=summed)
    return pq_result(counts_per_image(evaluation, workers), evaluation.categories, per_image)
