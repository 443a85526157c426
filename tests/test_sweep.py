"""The threshold sweep: every setting's merge is bit for bit eomt.postprocess.panoptic_segmentation with that setting,
and the --sweep grid is parsed as documented."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import eomt.postprocess as post
from dump.sweep import SweepGrid, parse_sweep, sweep_counts, sweep_panoptic
from eomt.postprocess import panoptic_segmentation
from eomt.transforms import padded_size
from metrics import pq
from tests.oracles import synthetic_logits

S = 64
STUFF = {3, 4}
NUM_CLASSES = 6
GRID = SweepGrid((0.0, 0.3, 0.5, 0.8, 0.9, 0.97), (0.0, 0.5, 0.8, 0.95, 1.0), default=(0.8, 0.8))


def spread_logits(num_queries: int, seed: int):
    """synthetic_logits with class confidences spread over (0, 1), so every threshold keeps a different set."""
    mask_logits, class_logits = synthetic_logits(num_queries, NUM_CLASSES, S // 4, seed, confident=0.8)
    scale = torch.rand(num_queries, 1, generator=torch.Generator().manual_seed(seed + 100)) * 1.2
    return mask_logits, class_logits * scale


def assert_same(result, reference):
    np.testing.assert_array_equal(result.segment_map, reference.segment_map)
    np.testing.assert_array_equal(result.class_map, reference.class_map)
    assert result.segment_map.dtype == reference.segment_map.dtype == np.int32
    assert result.class_map.dtype == np.int32
    assert result.segments == reference.segments


@pytest.mark.parametrize(("original", "chunk_bytes"), [((50, 70), post.CHUNK_BYTES), ((96, 64), 200_000),
                                                       ((33, 200), 1), ((1, 1), post.CHUNK_BYTES)])
def test_every_setting_equals_the_merge(original, chunk_bytes):
    resized = padded_size(*original, S)
    kept_counts = set()
    for seed in range(2):
        mask_logits, class_logits = spread_logits(40, seed)
        maps = sweep_panoptic(mask_logits, class_logits, S, resized, original, STUFF, GRID, chunk_bytes=chunk_bytes)
        for k, (score, overlap) in enumerate(GRID.settings):
            reference = panoptic_segmentation(mask_logits, class_logits, S, resized, original, STUFF, score, overlap,
                                              chunk_bytes=chunk_bytes)
            assert_same(maps.result(k), reference)
            kept_counts.add(len(reference.segments))
    if original == (50, 70):
        assert len(kept_counts) >= 4, "the settings must give different results, or the test proves little"


def tied_logits(num_queries: int, grid: int, seed: int):
    """Logits where some queries are exact copies of others, so every pixel value of theirs ties."""
    mask_logits, class_logits = synthetic_logits(num_queries, NUM_CLASSES, grid, seed, confident=0.8)
    class_logits = class_logits * torch.rand(num_queries, 1, generator=torch.Generator().manual_seed(seed)) * 1.2
    for copy, source in ((num_queries - 3, 2), (num_queries - 2, 4), (num_queries - 1, 0)):
        mask_logits[copy], class_logits[copy] = mask_logits[source], class_logits[source]
    class_logits[[2, num_queries - 3], 1] += 20  # both confident, so both kept
    return mask_logits, class_logits


@pytest.mark.parametrize("chunk_bytes", [1, post.CHUNK_BYTES])
def test_ties_go_to_the_lower_query_and_the_default_setting_is_exact(chunk_bytes):
    """On small images, CPU interpolation's last bits depend on the other masks of a chunk, which decides exact
    ties: the default setting is upsampled in the merge's own chunks and so is still the merge to the bit."""
    mask_logits, class_logits = tied_logits(12, S // 4, 7)
    original = (40, 60)
    resized = padded_size(*original, S)
    maps = sweep_panoptic(mask_logits, class_logits, S, resized, original, STUFF, GRID, chunk_bytes=chunk_bytes)
    for k, (score, overlap) in enumerate(GRID.settings):
        if score == GRID.default[0]:
            assert_same(maps.result(k), panoptic_segmentation(mask_logits, class_logits, S, resized, original,
                                                              STUFF, score, overlap, chunk_bytes=chunk_bytes))


def test_at_the_size_of_real_images_every_setting_is_exact_even_on_ties():
    size, original = 640, (512, 683)
    mask_logits, class_logits = tied_logits(16, size // 4, 5)
    resized = padded_size(*original, size)
    grid = SweepGrid((0.0, 0.5, 0.8, 0.95), (0.5, 0.8), default=(0.8, 0.8))
    maps = sweep_panoptic(mask_logits, class_logits, size, resized, original, STUFF, grid, chunk_bytes=30_000_000)
    for k, (score, overlap) in enumerate(grid.settings):
        assert_same(maps.result(k), panoptic_segmentation(mask_logits, class_logits, size, resized, original, STUFF,
                                                          score, overlap))


def test_nothing_kept_is_all_void():
    mask_logits, class_logits = spread_logits(8, 3)
    class_logits[:, -1] += 100  # every query says "no object"
    maps = sweep_panoptic(mask_logits, class_logits, S, (64, 64), (64, 64), STUFF, GRID)
    for k in range(len(GRID.settings)):
        result = maps.result(k)
        assert result.segments == [] and (result.segment_map == -1).all()


def test_counts_per_setting_are_the_pq_counts_of_that_merge():
    mask_logits, class_logits = spread_logits(30, 11)
    original = (48, 64)
    resized = padded_size(*original, S)
    gt = panoptic_segmentation(mask_logits, class_logits, S, resized, original, STUFF, 0.5, 0.5)
    gt_map, gt_segments = gt.coco()
    maps = sweep_panoptic(mask_logits, class_logits, S, resized, original, STUFF, GRID)
    counts = sweep_counts(maps, gt_map, gt_segments)
    assert len(counts) == len(GRID.settings)
    for k, (score, overlap) in enumerate(GRID.settings):
        ids, segments = panoptic_segmentation(mask_logits, class_logits, S, resized, original, STUFF, score,
                                              overlap).coco()
        assert counts[k] == pq.image_counts(gt_map, gt_segments, ids, segments)
    assert counts[GRID.settings.index((0.5, 0.5))] == {
        c: pq.CategoryCounts(1, 0, 0, 1.0, 1, 1) for c in {s["category_id"] for s in gt_segments}
    } or all(c.fp == c.fn == 0 for c in counts[GRID.settings.index((0.5, 0.5))].values())


def test_parse_sweep():
    grid = parse_sweep(["score=0.5:0.95:0.05"])
    assert grid.scores == (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95) and grid.overlaps == ()
    full = grid.including(0.8, 0.8)
    assert full.overlaps == (0.8,) and full.default == (0.8, 0.8) and len(full.settings) == 10
    assert (0.8, 0.8) in full.settings  # exactly the predictor's floats, so its row is the dump's
    both = parse_sweep(["overlap=0.9,0.7", "score=0.6"]).including(0.8, 0.8)
    assert both.scores == (0.6, 0.8) and both.overlaps == (0.7, 0.8, 0.9)
    assert both.settings[:3] == [(0.6, 0.7), (0.6, 0.8), (0.6, 0.9)]
    for bad, message in ((["threshold=0.5"], "score=VALUES"), (["score=0.9:0.5:0.1"], "start:stop:step"),
                         (["score=0.5:0.9:0"], "start:stop:step"), (["score=1.5"], r"\[0, 1\]"),
                         (["score=a"], "start:stop:step"), (["score=0.5", "score=0.6"], "twice")):
        with pytest.raises(ValueError, match=message):
            parse_sweep(bad)
