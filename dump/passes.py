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
    # Three stages run side by side: this thread decodes nothing and post-processes nothing, it only feeds the
    # model; one thread post-processes batch k (and sweeps it) while the model computes batch k + 1; the writers
    # render, encode, count and write. Each stage hands on in image order.
    posted: deque[Future] = deque()

    def hand_on(limit: int) -> None:
        while len(posted) > limit:
            for index, (result, maps) in posted.popleft().result():
                in_flight.append((index, writers.submit(write_prediction, writing, index, model_name, task, result,
                                                        maps)))
            while len(in_flight) > max_in_flight:
                finish(*in_flight.popleft())

    with bar, ThreadPoolExecutor(max_workers=2) as writers, ThreadPoolExecutor(max_workers=1) as post:
        for items in loader:
            ready = []
            for index, pixels, resized, original, error in items:
                if error is None:
                    ready.append((index, pixels, resized, original))
                else:
                    on_failure(index, error)
                    bar.update(1)
            for batch, logits in _logits(predictor, ready, task, on_failure, bar):
                posted.append(post.submit(_post_processed, predictor, batch, logits, task, sweep, on_failure, bar))
            hand_on(POSTS_AHEAD)
        hand_on(0)
        while in_flight:
            finish(*in_flight.popleft())
    outcome.seconds = time.perf_counter() - start
    return outcome


POSTS_AHEAD = 1  # batches whose logits wait for post-processing while the next forward runs (memory bound)


def _inputs(ready: list, task: str) -> torch.Tensor:
    """The network input of a batch: every sliding window of its images (semantic), else one padded image each."""
    if task == "semantic":
        return torch.cat([r[1][0] for r in ready])
    return torch.stack([r[1][0] for r in ready])


def _logits(predictor, ready: list, task: str, on_failure: Failure, bar) -> list:
    """[(batch, (mask_logits, class_logits))]: one forward for the batch, or, when it fails (out of memory, a
    model error), one per image, so that only the images that fail by themselves are lost."""
    if not ready:
        return []
    try:
        return [(ready, predictor.forward(_inputs(ready, task)))]
    except Exception as e:
        if predictor.device.type == "cuda":
            torch.cuda.empty_cache()
        if len(ready) == 1:
            on_failure(ready[0][0], f"model failed: {type(e).__name__}: {e}")
            bar.update(1)
            return []
    return [part for item in ready for part in _logits(predictor, [item], task, on_failure, bar)]


def _post_processed(predictor, batch: list, logits: tuple, task: str, sweep: SweepGrid | None,
                    on_failure: Failure, bar) -> list:
    """(index, (prediction, sweep maps or None)) per image of a batch; an image whose post-processing fails is
    reported and left out."""
    try:
        return list(zip([r[0] for r in batch], _post(predictor, batch, *logits, task, sweep), strict=True))
    except Exception as e:
        if len(batch) == 1:
            on_failure(batch[0][0], f"post-processing failed: {type(e).__name__}: {e}")
            bar.update(1)
            return []
    results, first = [], 0
    for item in batch:  # one image at a time: its own slice of the logits
        count = len(item[1][0]) if task == "semantic" else 1
        part = tuple(t[first:first + count] for t in logits)
        results.extend(_post_processed(predictor, [item], part, task, sweep, on_failure, bar))
        first += count
    return results


def _post(predictor, batch: list, mask_logits, class_logits, task: str, sweep: SweepGrid | None) -> list:
    resized, original = [r[2] for r in batch], [r[3] for r in batch]
    if task == "instance":  # the top-100 instances and the original (H, W) of each image
        results = predictor.instance_from_logits(mask_logits, class_logits, resized, original)
        return [((instances, size), None) for instances, size in zip(results, original, strict=True)]
    if task == "semantic":  # each image's class map from the windows of the whole batch
        maps, first = [], 0
        with torch.inference_mode():
            for _, (windows, starts), size, image_size in batch:
                last = first + len(windows)
                maps.append((semantic_segmentation(mask_logits[first:last], class_logits[first:last],
                                                   predictor.img_size, starts, size, image_size), None))
                first = last
        return maps
    results = predictor.panoptic_from_logits(mask_logits, class_logits, resized, original)
    if sweep is None:
        return [(result, None) for result in results]
    return [(result, sweep_panoptic(mask_logits[i], class_logits[i], predictor.img_size, resized[i], original[i],
                                    predictor.stuff_classes, sweep, predictor.mask_threshold))
            for i, result in enumerate(results)]
