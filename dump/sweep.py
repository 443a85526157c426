"""The threshold sweep: the panoptic merge for a grid of (score, overlap) settings while an image's logits are in
memory, and the PQ counts of each setting.

The merge (eomt.postprocess.panoptic_segmentation) keeps the queries whose best class is an object with
probability > the score threshold; the kept queries compete for pixels by score x mask probability, and a query
becomes a segment when it keeps at least the overlap threshold of its own mask. Running it once per setting would
upsample every query's mask once per setting; here each mask is upsampled once:

- the kept sets are nested: with the score thresholds from high to low, each adds a group of queries. The owner
  of a pixel under a threshold is the best of the groups' own winners up to it, so each group's winner is computed
  once (chunk by chunk, as the merge does) and the groups are combined cumulatively. Ties go to the lower query
  index, as in the merge (torch's max returns the first maximum; a later chunk wins only when strictly better);
- the overlap thresholds of one score threshold share the pixel owners; only which queries become segments differs.

Every setting's result is the merge's with that setting, bit for bit for the default setting and wherever
upsampling a mask does not depend on the other masks of its chunk (tests/test_sweep.py checks both).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from eomt.postprocess import CHUNK_BYTES, PanopticResult, upsample_masks
from metrics import pq

KNOBS = ("score", "overlap")


@dataclass(frozen=True)
class SweepGrid:
    """The settings of a sweep: every score threshold with every overlap threshold, score-major. A knob the
    command line did not name has no values until `including` adds the predictor's own setting."""

    scores: tuple[float, ...]
    overlaps: tuple[float, ...]
    default: tuple[float, float] | None = None  # the predictor's own setting, once `including` added it

    @property
    def settings(self) -> list[tuple[float, float]]:
        return [(s, o) for s in self.scores for o in self.overlaps]

    def including(self, score: float, overlap: float) -> SweepGrid:
        """The grid with the predictor's own setting among its values, marked as the default."""
        return SweepGrid(tuple(sorted({*self.scores, score})), tuple(sorted({*self.overlaps, overlap})),
                         (score, overlap))


def _values(knob: str, text: str) -> list[float]:
    """'0.5:0.95:0.05' (start:stop:step, stop included), '0.7,0.8' or '0.8'."""
    try:
        if ":" in text:
            start, stop, step = (float(v) for v in text.split(":"))
            if step <= 0 or stop < start:
                raise ValueError
            count = math.floor((stop - start) / step + 1e-9) + 1
            values = [round(start + k * step, 6) for k in range(count)]
        else:
            values = [float(v) for v in text.split(",")]
    except ValueError:
        raise ValueError(f"--sweep {knob}={text}: give start:stop:step (step > 0, stop >= start), a comma list or "
                         "one value") from None
    if not all(0.0 <= v <= 1.0 for v in values):
        raise ValueError(f"--sweep {knob}={text}: thresholds lie in [0, 1]")
    return values


def parse_sweep(specs: Sequence[str]) -> SweepGrid:
    """The grid of `--sweep score=A:B:STEP [overlap=...]` (see _values for the forms); ValueError naming the bad
    part. The default setting is added where the predictor is known (SweepGrid.including)."""
    values: dict[str, tuple[float, ...]] = {knob: () for knob in KNOBS}
    for spec in specs:
        knob, _, text = spec.partition("=")
        if knob not in KNOBS or not text:
            raise ValueError(f"--sweep {spec}: write {' and/or '.join(k + '=VALUES' for k in KNOBS)}")
        if values[knob]:
            raise ValueError(f"--sweep names {knob} twice")
        values[knob] = tuple(sorted(set(_values(knob, text))))
    if not any(values.values()):
        raise ValueError("--sweep needs score=VALUES and/or overlap=VALUES")
    return SweepGrid(values["score"], values["overlap"])


# ------------------------------------------------------------------------------------------------------ merge

@dataclass(frozen=True, eq=False)
class _Ownership:
    """Who owns each pixel under one score threshold: kept queries (ascending), and per pixel the position of its
    owner among them, len(kept) where the pixel is outside its owner's own mask (void)."""

    kept: list[int]
    owner: torch.Tensor  # (H * W,) int64
    owned_area: list[int]  # pixels won, inside the own mask or not
    final_area: list[int]  # pixels won inside the own mask


@dataclass(frozen=True, eq=False)
class SweepMaps:
    """One image's merge under every setting of `grid` (settings in grid.settings order)."""

    grid: SweepGrid
    owners: list[np.ndarray]  # per score threshold of grid.scores: (H, W) int32 owner position, len(kept) = void
    luts: list[np.ndarray]  # per setting: segment id per owner position (last entry: void, -1)
    segments: list[list[dict]]  # per setting: the merge's segments

    def result(self, k: int) -> PanopticResult:
        """The merge's result under setting k, as panoptic_segmentation returns it."""
        owner = self.owners[k // len(self.grid.overlaps)]
        lut = self.luts[k]
        classes = np.array([s["category_id"] for s in self.segments[k]] + [-1], dtype=np.int32)
        segment_map = lut[owner]
        return PanopticResult(segment_map=segment_map, class_map=classes[segment_map], segments=self.segments[k])


class _Winner:
    """Per pixel, the best query so far by score x probability (the first on ties) and whether the pixel lies in
    that query's own mask: the merge's running state."""

    def __init__(self, pixels: int, n_queries: int, device) -> None:
        self.best = torch.full((pixels,), -torch.inf, device=device)
        self.owner = torch.full((pixels,), n_queries, dtype=torch.long, device=device)
        self.inside = torch.zeros(pixels, dtype=torch.bool, device=device)

    def update(self, values: torch.Tensor, queries: torch.Tensor, own_mask: torch.Tensor) -> None:
        """Takes in the (K, pixels) values of the next `queries` (ascending): as the merge, torch's max keeps the
        first of equal values and a later chunk wins only when strictly better."""
        value, index = values.max(0)
        self._take(value > self.best, value, queries[index], own_mask.gather(0, index[None])[0])

    def absorb(self, other: _Winner) -> None:
        """Adds another group's winners: the better value, and on a tie the lower query index, as the merge's
        argmax over both groups would."""
        better = (other.best > self.best) | ((other.best == self.best) & (other.owner < self.owner))
        self._take(better, other.best, other.owner, other.inside)

    def _take(self, better: torch.Tensor, best: torch.Tensor, owner: torch.Tensor, inside: torch.Tensor) -> None:
        self.best = torch.where(better, best, self.best)
        self.owner = torch.where(better, owner, self.owner)
        self.inside = torch.where(better, inside, self.inside)


def _chunks(queries: torch.Tensor, step: int) -> list[torch.Tensor]:
    return [queries[start:start + step] for start in range(0, len(queries), step)]


def _group_winners(mask_logits, scores, group, chunks, img_size, resized_size, original_size, mask_threshold,
                   mask_area) -> dict[int, _Winner]:
    """Each group's own winners, upsampling the chunks' masks once (and filling mask_area)."""
    pixels = original_size[0] * original_size[1]
    winners: dict[int, _Winner] = {}
    for chunk in chunks:
        probs = upsample_masks(mask_logits[chunk].float(), img_size, resized_size, original_size)
        probs = probs.sigmoid_().flatten(1)
        own_mask = probs >= mask_threshold
        mask_area[chunk] = own_mask.sum(1)
        values = probs.mul_(scores[chunk, None])  # in place, as the merge
        of_chunk = group[chunk]
        for j in of_chunk.unique().tolist():
            rows = (of_chunk == j).nonzero()[:, 0]
            whole = len(rows) == len(chunk)
            winner = winners.setdefault(j, _Winner(pixels, len(scores), mask_logits.device))
            winner.update(values if whole else values[rows], chunk[rows], own_mask if whole else own_mask[rows])
    return winners


def _ownerships(mask_logits, class_logits, img_size, resized_size, original_size, thresholds, exact_for: float,
                mask_threshold, chunk_bytes):
    """(labels, scores, mask areas, {threshold: _Ownership}) for every score threshold.

    Each query's mask is upsampled once. The queries the `exact_for` threshold keeps are upsampled in the chunks
    the merge makes of them, so that setting's values, and so its result, are the merge's to the bit even where
    interpolation's last bits depend on the chunk (small images on CPU); the other queries follow in chunks of
    their own."""
    height, width = original_size
    num_classes = class_logits.shape[-1] - 1
    scores, labels = class_logits.float().softmax(-1).max(-1)
    descending = sorted(set(thresholds), reverse=True)
    # The merge's own test, per threshold: the same comparison of the same float32 scores.
    passes = torch.stack([(labels != num_classes) & (scores > t) for t in descending])
    group = torch.where(passes.any(0), passes.int().argmax(0), len(descending))  # the highest threshold passed
    exact = descending.index(exact_for)
    step = max(1, chunk_bytes // (4 * img_size * img_size + 5 * height * width))  # the merge's chunks
    chunks = _chunks((group <= exact).nonzero()[:, 0], step) + \
        _chunks(((group > exact) & (group < len(descending))).nonzero()[:, 0], step)
    mask_area = torch.zeros(len(scores), dtype=torch.long, device=mask_logits.device)
    winners = _group_winners(mask_logits, scores, group, chunks, img_size, resized_size, original_size,
                             mask_threshold, mask_area)
    combined = _Winner(height * width, len(scores), mask_logits.device)
    result = {}
    for j, threshold in enumerate(descending):
        if j in winners:
            combined.absorb(winners[j])
        result[threshold] = _ownership((group <= j).nonzero()[:, 0], combined.owner, combined.inside, len(scores))
    return labels, scores, mask_area, result


def _ownership(kept: torch.Tensor, owner: torch.Tensor, inside: torch.Tensor, n_queries: int) -> _Ownership:
    position = torch.full((n_queries + 1,), 0, dtype=torch.long, device=owner.device)
    position[kept] = torch.arange(len(kept), device=owner.device)
    at = position[owner]  # without kept queries every pixel is 0, as in the merge
    owned_area = torch.bincount(at, minlength=len(kept)).tolist()
    at = torch.where(inside, at, len(kept))
    final_area = torch.bincount(at, minlength=len(kept) + 1)[:-1].tolist()
    return _Ownership(kept.tolist(), at, owned_area, final_area)


def _segments(ownership: _Ownership, labels: list[int], scores: list[float], mask_area: list[int], stuff: set,
              overlap_threshold: float) -> tuple[list[int], list[dict]]:
    """The merge's acceptance of segments: segment id per kept position and the segments."""
    segment_of_query = [-1] * len(ownership.kept)
    segments: list[dict] = []
    stuff_segment: dict[int, dict] = {}
    for k, query in enumerate(ownership.kept):
        label, score, area = labels[query], scores[query], mask_area[query]
        owned, final = ownership.owned_area[k], ownership.final_area[k]
        if area == 0 or owned == 0 or final == 0 or owned / area < overlap_threshold:
            continue
        if label in stuff_segment:
            segment = stuff_segment[label]
            segment["area"] += final
        else:
            segment = {"id": len(segments), "category_id": label, "isthing": label not in stuff, "score": score,
                       "area": final}
            segments.append(segment)
            if label in stuff:
                stuff_segment[label] = segment
        segment_of_query[k] = segment["id"]
    return segment_of_query, segments


@torch.inference_mode()
def sweep_panoptic(mask_logits: torch.Tensor, class_logits: torch.Tensor, img_size: int,
                   resized_size: tuple[int, int], original_size: tuple[int, int], stuff_classes, grid: SweepGrid,
                   mask_threshold: float = 0.5, chunk_bytes: int = CHUNK_BYTES) -> SweepMaps:
    """eomt.postprocess.panoptic_segmentation of one image's (Q, h, w) mask and (Q, C+1) class logits under every
    setting of `grid`, each mask upsampled once. The grid's default setting (else its highest score threshold) is
    the merge's to the bit in every case; the others are wherever upsampling a mask gives the same values in any
    chunk (on CUDA, and on CPU at the sizes of real images)."""
    exact_for = grid.default[0] if grid.default else max(grid.scores)
    labels, scores, mask_area, ownerships = _ownerships(mask_logits, class_logits, img_size, resized_size,
                                                        original_size, grid.scores, exact_for, mask_threshold,
                                                        chunk_bytes)
    labels, scores, mask_area = labels.tolist(), scores.tolist(), mask_area.tolist()
    stuff = set(stuff_classes)
    owners, luts, segments = [], [], []
    for score in grid.scores:
        ownership = ownerships[score]
        owners.append(ownership.owner.view(original_size).to(torch.int32).cpu().numpy())
        for overlap in grid.overlaps:
            segment_of_query, accepted = _segments(ownership, labels, scores, mask_area, stuff, overlap)
            luts.append(np.array(segment_of_query + [-1], dtype=np.int32))
            segments.append(accepted)
    return SweepMaps(grid, owners, luts, segments)


# --------------------------------------------------------------------------------------------------- counts

def sweep_counts(maps: SweepMaps, gt_map: np.ndarray, gt_segments: Sequence[Mapping]) -> list[dict]:
    """PQ counts of every setting against one image's ground truth (COCO ids, as the dump counts its
    predictions)."""
    counts = []
    for k in range(len(maps.luts)):
        ids, segments = maps.result(k).coco()
        counts.append(pq.image_counts(gt_map, gt_segments, ids, segments))
    return counts


def sweep_record(grid: SweepGrid, counts: Sequence[Mapping[int, pq.CategoryCounts]]) -> dict:
    """What the per-image sweep file holds: the settings, the default one and, per setting, {category id: [tp, fp,
    fn, iou_sum]}."""
    return {"settings": [list(s) for s in grid.settings], "default": list(grid.default or ()),
            "counts": [{str(k): [c.tp, c.fp, c.fn, c.iou_sum] for k, c in sorted(per.items())} for per in counts]}


@dataclass(frozen=True)
class SweepRecord:
    settings: list[tuple[float, float]]
    default: tuple[float, float] | None
    counts: list[dict[int, pq.CategoryCounts]]  # per setting


def parse_sweep_record(record) -> SweepRecord:
    """A per-image sweep file's content; ValueError when it is malformed."""
    try:
        settings = [(float(s), float(o)) for s, o in record["settings"]]
        default = tuple(float(v) for v in record.get("default") or ()) or None
        counts = [{int(k): pq.CategoryCounts(int(v[0]), int(v[1]), int(v[2]), float(v[3])) for k, v in per.items()}
                  for per in record["counts"]]
    except (KeyError, TypeError, ValueError, IndexError, AttributeError) as e:
        raise ValueError(f"not a sweep record ({e!r})") from None
    if len(counts) != len(settings):
        raise ValueError(f"{len(settings)} settings but {len(counts)} count lists")
    return SweepRecord(settings, default, counts)


def sweep_summary(records: Sequence[SweepRecord], categories: Mapping[int, bool]) -> dict:
    """One model's entry of sweep.json from its per-image records of one grid: per setting, All / Things / Stuff
    PQ/SQ/RQ of the counts summed over the images (image by image, as the dataset-level metrics are summed)."""
    first = records[0]
    results = []
    for k, (score, overlap) in enumerate(first.settings):
        summary = pq.pq_summary(pq.sum_counts(record.counts[k] for record in records), categories)
        results.append({"score": score, "overlap": overlap,
                        **{group: summary[group] for group in ("All", "Things", "Stuff")}})
    default = {"score": first.default[0], "overlap": first.default[1]} if first.default else None
    return {"default": default, "images": len(records), "results": results}
