"""The two kinds of pass over the images: writing the data files, and running one model on its task.

Decoding and resizing happen in DataLoader worker processes, overlapping the forward pass; the forward and the
post-processing run on the model's device; rendering, PNG and RLE encoding and the counting of every metric run in
a thread pool so the device is fed while files are written. Panoptic and instance models see each image resized and
padded, semantic models its sliding windows (a batch of images is one forward over all their windows). With a sweep
grid, each image's panoptic merge also runs for every setting of the grid while its logits are in memory
(dump.sweep), and the writer counts PQ for each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dump.folder import OutputError, os_error_text
from dump.sweep import SweepGrid, sweep_panoptic
from dump.writer import Writing, write_data, write_prediction
from eomt.postprocess import semantic_segmentation
from eomt.transforms import resize_and_pad, sliding_windows
from metrics import pq

Failure = Callable[[int, str], None]  # (image index, reason)


def _as_list(items):
    """Collate function: keep the items as they are (a module-level function, so workers can pickle it)."""
    return items


class _DataJob(Dataset):
    def __init__(self, writing: Writing, dataset, indices: list[int]):
        self.writing, self.dataset, self.indices = writing, dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        """(index, reason it failed or None, whether the failure stops the run); a worker returns the reason
        as text, since a re-raised exception would arrive as a traceback."""
        index = self.indices[k]
        try:
            write_data(self.writing, index, self.dataset)
            return index, None, False
        except OSError as e:  # the output cannot be written: every image would fail the same way
            return index, os_error_text(e), True
        except Exception as e:  # a bad image must not stop the run: report it and go on
            return index, f"{type(e).__name__}: {e}", False


def write_data_files(writing: Writing, dataset, indices: list[int], workers: int, on_failure: Failure,
                     show_progress: bool) -> int:
    """Writes inputs and ground truth of `indices`; returns how many succeeded."""
    if not indices:
        return 0
    loader = DataLoader(_DataJob(writing, dataset, indices), batch_size=None, num_workers=workers,
                        collate_fn=_as_list)
    done = 0
    with tqdm(loader, total=len(indices), desc="data", unit="img", disable=not show_progress,
              dynamic_ncols=True) as bar:
        for index, error, fatal in bar:
            if fatal:
                raise OutputError(error)
            if error is None:
                done += 1
            else:
                on_failure(index, error)
    return done


class _ImageJob(Dataset):
    """An image as its model's task wants it: resized and padded, or (semantic) its sliding windows and their
    starts; pixels are (3, S, S), or (n, 3, S, S) with `starts`."""

    def __init__(self, dataset, indices: list[int], size: int, task: str):
        self.dataset, self.indices, self.size, self.task = dataset, indices, size, task

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        index = self.indices[k]
        try:
            image = self.dataset.read_image(index)
            if self.task == "semantic":
                pixels, starts, resized = sliding_windows(image, self.size)
            else:
                (pixels, resized), starts = resize_and_pad(image, self.size), None
            return index, (pixels, starts), resized, (image.height, image.width), None
        except Exception as e:
            return index, None, None, None, f"{type(e).__name__}: {e}"


@dataclass
class ModelPassResult:
    done: int = 0
    seconds: float = 0.0
    counts: dict[tuple[str, str], dict[int, pq.CategoryCounts]] = field(default_factory=dict)


def run_model(writing: Writing, dataset, indices: list[int], predictor, model_name: str, batch_size: int,
              workers: int, on_failure: Failure, show_progress: bool, sweep: SweepGrid | None = None,
              task: str = "panoptic") -> ModelPassResult:
    """Predicts `indices` with one model on its `task` and writes its files; failures are reported and skipped.
    With `sweep` (a panoptic model's grid holding the predictor's own setting), the sweep's counts are written too."""
    outcome = ModelPassResult()
    if not indices:
        return outcome
    layout = writing.layout
    size = predictor.model.config.img_size
    loader = DataLoader(_ImageJob(dataset, indices, size, task), batch_size=batch_size, num_workers=workers,
                        collate_fn=_as_list, pin_memory=predictor.device.type == "cuda")
    # Bound the writes in flight so a slow disk cannot make predictions pile up in memory.
    in_flight: deque[tuple[int, Future]] = deque()
    max_in_flight = 4 * batch_size + 4
    bar = tqdm(total=len(indices), desc=model_name, unit="img", disable=not show_progress, dynamic_ncols=True)

    def finish(index: int, future: Future) -> None:
        try:
            counts = future.result()
            outcome.done += 1
            if counts is not None:
                outcome.counts[(layout.image_name(index), model_name)] = counts
        except OSError as e:  # the output cannot be written: stop, keeping what is done
            raise OutputError(os_error_text(e)) from None
        except Exception as e:
            on_failure(index, f"writing the prediction failed: {type(e).__name__}: {e}")
        bar.update(1)

    start = time.perf_counter()
    with bar, ThreadPoolExecutor(max_workers=2) as pool:  # the bar ends its line even when the run stops
        for items in loader:
            ready = []
            for index, pixels, resized, original, error in items:
                if error is None:
                    ready.append((index, pixels, resized, original))
                else:
                    on_failure(index, error)
                    bar.update(1)
            for index, (result, maps) in _predict(predictor, ready, task, sweep, on_failure, bar):
                in_flight.append((index, pool.submit(write_prediction, writing, index, model_name, task, result,
                                                     maps)))
            while len(in_flight) > max_in_flight:
                finish(*in_flight.popleft())
        while in_flight:
            finish(*in_flight.popleft())
    outcome.seconds = time.perf_counter() - start
    return outcome


def _predict(predictor, ready: list, task: str, sweep: SweepGrid | None, on_failure: Failure, bar) -> list:
    """(index, (prediction, sweep maps or None)) for a batch; when the batch fails (out of memory, a model
    error), each image is retried alone so that only the images that fail by themselves are lost."""
    if not ready:
        return []
    try:
        forward = {"semantic": _forward_semantic, "instance": _forward_instance}.get(task, _forward)
        return list(zip([r[0] for r in ready], forward(predictor, ready, sweep), strict=True))
    except Exception as e:
        if predictor.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(ready) == 1:
            on_failure(ready[0][0], f"model failed: {type(e).__name__}: {e}")
            bar.update(1)
            return []
    results = []
    for item in ready:
        results.extend(_predict(predictor, [item], task, sweep, on_failure, bar))
    return results


def _forward_instance(predictor, ready: list, sweep: SweepGrid | None) -> list:
    """(top-100 instances, original (H, W)) per image."""
    pixels = torch.stack([r[1][0] for r in ready])
    resized, original = [r[2] for r in ready], [r[3] for r in ready]
    results = predictor.instance_from_logits(*predictor.forward(pixels), resized, original)
    return [((instances, size), None) for instances, size in zip(results, original, strict=True)]


def _forward_semantic(predictor, ready: list, sweep: SweepGrid | None) -> list:
    """The class map of each image from one forward over the windows of the whole batch."""
    mask_logits, class_logits = predictor.forward(torch.cat([r[1][0] for r in ready]))
    maps, first = [], 0
    with torch.inference_mode():
        for _, (windows, starts), resized, original in ready:
            last = first + len(windows)
            maps.append((semantic_segmentation(mask_logits[first:last], class_logits[first:last],
                                               predictor.img_size, starts, resized, original), None))
            first = last
    return maps


def _forward(predictor, ready: list, sweep: SweepGrid | None) -> list:
    pixels = torch.stack([r[1][0] for r in ready])
    mask_logits, class_logits = predictor.forward(pixels)
    resized, original = [r[2] for r in ready], [r[3] for r in ready]
    results = predictor.panoptic_from_logits(mask_logits, class_logits, resized, original)
    if sweep is None:
        return [(result, None) for result in results]
    return [(result, sweep_panoptic(mask_logits[i], class_logits[i], predictor.img_size, resized[i], original[i],
                                    predictor.stuff_classes, sweep, predictor.mask_threshold))
            for i, result in enumerate(results)]
