"""The two kinds of pass over the images: writing the data files, and running one model.

Decoding and resizing happen in DataLoader worker processes, overlapping the forward pass; the forward and the
post-processing run on the model's device; rendering, PNG encoding and PQ counting run in a thread pool so the
device is fed while files are written. With a sweep grid, each image's merge also runs for every setting of the grid
while its logits are in memory (dump.sweep), and the writer counts PQ for each.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from dump.folder import Layout, OutputError, os_error_text
from dump.sweep import SweepGrid, sweep_panoptic
from dump.writer import write_data, write_prediction
from eomt.transforms import resize_and_pad
from metrics import pq

Failure = Callable[[int, str], None]  # (image index, reason)


def _as_list(items):
    """Collate function: keep the items as they are (a module-level function, so workers can pickle it)."""
    return items


class _DataJob(Dataset):
    def __init__(self, layout: Layout, dataset, indices: list[int], colors: np.ndarray, with_ground_truth: bool):
        self.layout, self.dataset, self.indices = layout, dataset, indices
        self.colors, self.with_ground_truth = colors, with_ground_truth

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        """(index, reason it failed or None, whether the failure stops the run); a worker returns the reason
        as text, since a re-raised exception would arrive as a traceback."""
        index = self.indices[k]
        try:
            write_data(self.layout, index, self.dataset, self.colors, self.with_ground_truth)
            return index, None, False
        except OSError as e:  # the output cannot be written: every image would fail the same way
            return index, os_error_text(e), True
        except Exception as e:  # a bad image must not stop the run: report it and go on
            return index, f"{type(e).__name__}: {e}", False


def write_data_files(layout: Layout, dataset, indices: list[int], colors: np.ndarray, with_ground_truth: bool,
                     workers: int, on_failure: Failure, show_progress: bool) -> int:
    """Writes inputs and ground truth of `indices`; returns how many succeeded."""
    if not indices:
        return 0
    loader = DataLoader(_DataJob(layout, dataset, indices, colors, with_ground_truth), batch_size=None,
                        num_workers=workers, collate_fn=_as_list)
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
    def __init__(self, dataset, indices: list[int], size: int):
        self.dataset, self.indices, self.size = dataset, indices, size

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, k: int):
        index = self.indices[k]
        try:
            image = self.dataset.read_image(index)
            pixels, resized = resize_and_pad(image, self.size)
            return index, pixels, resized, (image.height, image.width), None
        except Exception as e:
            return index, None, None, None, f"{type(e).__name__}: {e}"


@dataclass
class ModelPassResult:
    done: int = 0
    seconds: float = 0.0
    counts: dict[tuple[str, str], dict[int, pq.CategoryCounts]] = field(default_factory=dict)


def run_model(layout: Layout, dataset, indices: list[int], predictor, model_name: str, colors: np.ndarray,
              with_ground_truth: bool, batch_size: int, workers: int, on_failure: Failure,
              show_progress: bool, sweep: SweepGrid | None = None) -> ModelPassResult:
    """Predicts `indices` with one model and writes its files; failures are reported and skipped. With `sweep`
    (a grid holding the predictor's own setting), the sweep's counts are written too."""
    outcome = ModelPassResult()
    if not indices:
        return outcome
    size = predictor.model.config.img_size
    loader = DataLoader(_ImageJob(dataset, indices, size), batch_size=batch_size, num_workers=workers,
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
            for index, (result, maps) in _predict(predictor, ready, sweep, on_failure, bar):
                in_flight.append((index, pool.submit(write_prediction, layout, index, model_name, result, colors,
                                                     with_ground_truth, maps)))
            while len(in_flight) > max_in_flight:
                finish(*in_flight.popleft())
        while in_flight:
            finish(*in_flight.popleft())
    outcome.seconds = time.perf_counter() - start
    return outcome


def _predict(predictor, ready: list, sweep: SweepGrid | None, on_failure: Failure, bar) -> list:
    """(index, (panoptic result, sweep maps or None)) for a batch; when the batch fails (out of memory, a model
    error), each image is retried alone so that only the images that fail by themselves are lost."""
    if not ready:
        return []
    try:
        return list(zip([r[0] for r in ready], _forward(predictor, ready, sweep), strict=True))
    except Exception as e:
        if predictor.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(ready) == 1:
            on_failure(ready[0][0], f"model failed: {type(e).__name__}: {e}")
            bar.update(1)
            return []
    results = []
    for item in ready:
        results.extend(_predict(predictor, [item], sweep, on_failure, bar))
    return results


def _forward(predictor, ready: list, sweep: SweepGrid | None) -> list:
    pixels = torch.stack([r[1] for r in ready])
    mask_logits, class_logits = predictor.forward(pixels)
    resized, original = [r[2] for r in ready], [r[3] for r in ready]
    results = predictor.panoptic_from_logits(mask_logits, class_logits, resized, original)
    if sweep is None:
        return [(result, None) for result in results]
    return [(result, sweep_panoptic(mask_logits[i], class_logits[i], predictor.img_size, resized[i], original[i],
                                    predictor.stuff_classes, sweep, predictor.mask_threshold))
            for i, result in enumerate(results)]
