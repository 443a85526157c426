"""Post-processing against the naive reference (upsample every query) and against transformers' image
processor (PIL backend) on the same logits; pre-processing against the processor's pixels."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from transformers import EomtImageProcessorPil
from transformers.image_transforms import get_size_with_aspect_ratio

import eomt.postprocess as post
from eomt.postprocess import instance_segmentation, panoptic_segmentation, semantic_segmentation
from eomt.transforms import padded_size, resize_and_pad, sliding_windows, window_size
from tests.oracles import IMAGENET_MEAN, IMAGENET_STD, naive_panoptic, naive_upsample, synthetic_logits

S = 64  # input size; mask logits are S/4
STUFF = {3, 4}
NUM_CLASSES = 6


class Outputs:  # what transformers' post-processing reads from a model output
    def __init__(self, masks_queries_logits, class_queries_logits, patch_offsets=None):
        self.masks_queries_logits = masks_queries_logits
        self.class_queries_logits = class_queries_logits
        self.patch_offsets = patch_offsets


def _assert_same_panoptic(result, segment_map, class_map, segments):
    np.testing.assert_array_equal(result.segment_map, segment_map.numpy())
    np.testing.assert_array_equal(result.class_map, class_map.numpy())
    assert result.segment_map.dtype == np.int32 and result.class_map.dtype == np.int32
    assert result.segments == segments


@pytest.mark.parametrize("original", [(50, 70), (96, 64), (33, 200), (64, 64), (1, 1)])
@pytest.mark.parametrize("chunk_bytes", [1, post.CHUNK_BYTES])
def test_panoptic_equals_the_naive_reference(original, chunk_bytes):
    """Chunked upsampling of the kept queries only gives exactly what upsampling all of them gives."""
    for seed in range(3):
        mask_logits, class_logits = synthetic_logits(30, NUM_CLASSES, S // 4, seed)
        resized = padded_size(*original, S)
        result = panoptic_segmentation(mask_logits, class_logits, S, resized, original, STUFF,
                                       chunk_bytes=chunk_bytes)
        _assert_same_panoptic(result, *naive_panoptic(mask_logits, class_logits, S, resized, original, STUFF))
        if original == (50, 70):
            assert len(result.segments) >= 3 and (result.segment_map == -1).any()


def test_stuff_segments_merge_and_things_do_not():
    hits = {"stuff": 0, "thing": 0}
    for seed in range(12):
        mask_logits, class_logits = synthetic_logits(40, 2, S // 4, seed, confident=0.9)
        result = panoptic_segmentation(mask_logits, class_logits, S, (64, 64), (64, 64), stuff_classes={0})
        labels = [s["category_id"] for s in result.segments]
        assert labels.count(0) <= 1  # one segment for the stuff class, however many queries predict it
        assert all(s["isthing"] == (s["category_id"] != 0) for s in result.segments)
        for segment in result.segments:
            assert segment["area"] == int((result.segment_map == segment["id"]).sum()) > 0
        hits["thing"] += labels.count(1) > 1
        naive = naive_panoptic(mask_logits, class_logits, S, (64, 64), (64, 64), {0})
        hits["stuff"] += sum(1 for s in naive[2] if s["category_id"] == 0) == 1 and any(
            (class_logits.softmax(-1).max(-1).indices == 0).tolist())
    assert hits["thing"] > 0 and hits["stuff"] > 0


def test_overlap_exactly_at_the_threshold_is_kept():
    """The reference keeps a segment when owned/own area >= 0.8 (transformers uses >)."""
    mask_logits = torch.full((2, 10, 10), -5.0)
    mask_logits[0, 0:5] = 5.0  # query 0: rows 0-4, more confident
    mask_logits[1, 4:9] = 5.0  # query 1: rows 4-8; row 4 goes to query 0, so it owns 40 of its 50 pixels
    class_logits = torch.tensor([[10.0, 0.0, 0.0], [0.0, 10.0, 7.5]])  # scores 0.99995 and ~0.92
    for threshold, segments in ((0.8, 2), (0.81, 1)):
        result = panoptic_segmentation(mask_logits, class_logits, 10, (10, 10), (10, 10),
                                       overlap_threshold=threshold)
        assert len(result.segments) == segments
    assert [s["area"] for s in result.segments] == [50]


def test_nothing_kept_is_all_void():
    mask_logits, class_logits = synthetic_logits(10, NUM_CLASSES, S // 4, 0)
    class_logits[:, -1] = 100.0  # every query says "no object"
    result = panoptic_segmentation(mask_logits, class_logits, S, (40, 64), (30, 48))
    assert result.segments == [] and (result.segment_map == -1).all() and (result.class_map == -1).all()
    assert result.segment_map.shape == (30, 48)


def test_panoptic_upsamples_only_kept_queries_in_chunks(monkeypatch):
    calls = []
    real = post.upsample_masks

    def recording(mask_logits, *args):
        calls.append(mask_logits.shape[0])
        return real(mask_logits, *args)

    monkeypatch.setattr(post, "upsample_masks", recording)
    mask_logits, class_logits = synthetic_logits(200, NUM_CLASSES, S // 4, 1)
    scores, labels = class_logits.softmax(-1).max(-1)
    kept = int(((labels != NUM_CLASSES) & (scores > 0.8)).sum())
    assert 0 < kept < 200
    original = (200, 250)
    resized = padded_size(*original, S)
    whole = panoptic_segmentation(mask_logits, class_logits, S, resized, original, STUFF)
    assert calls == [kept]  # small enough for one chunk, and only the kept queries
    calls.clear()
    chunked = panoptic_segmentation(mask_logits, class_logits, S, resized, original, STUFF, chunk_bytes=1)
    assert calls == [1] * kept
    _assert_same_panoptic(chunked, *naive_panoptic(mask_logits, class_logits, S, resized, original, STUFF))
    np.testing.assert_array_equal(chunked.segment_map, whole.segment_map)
    assert chunked.segments == whole.segments


def _naive_instances(mask_logits, class_logits, resized, original, top_k=100):
    scores = class_logits.softmax(-1)[:, :-1]
    top_scores, top = scores.flatten().topk(min(top_k, scores.numel()))
    masks = naive_upsample(mask_logits, S, resized, original)[top // scores.shape[1]]
    binary = masks > 0
    mask_scores = (masks.sigmoid().flatten(1) * binary.flatten(1)).sum(1) / (binary.flatten(1).sum(1) + 1e-6)
    return top_scores * mask_scores, top % scores.shape[1], binary


@pytest.mark.parametrize("num_queries,num_classes", [(30, 6), (200, 80)])
def test_instances_equal_the_reference_top_k(num_queries, num_classes):
    mask_logits, class_logits = synthetic_logits(num_queries, num_classes, S // 4, 4)
    original = (70, 50)
    resized = padded_size(*original, S)
    instances = instance_segmentation(mask_logits, class_logits, S, resized, original, chunk_bytes=1)
    scores, labels, masks = _naive_instances(mask_logits, class_logits, resized, original)
    assert len(instances) == min(100, num_queries * num_classes)
    assert [i["score"] for i in instances] == sorted((i["score"] for i in instances), reverse=True)
    # Scores agree to float rounding only: torch sums one long row in another order than many rows.
    got = sorted((i["category_id"], i["mask"].tobytes(), i["score"]) for i in instances)
    want = sorted((int(c), m.numpy().tobytes(), float(s)) for c, s, m in zip(labels, scores, masks, strict=True))
    assert [g[:2] for g in got] == [w[:2] for w in want]
    assert [g[2] for g in got] == pytest.approx([w[2] for w in want], rel=1e-6, abs=1e-9)
    assert instances[0]["mask"].shape == original and instances[0]["mask"].dtype == bool


# ------------------------------------------------------------------------------------------ vs transformers

def _processor(**size):
    return EomtImageProcessorPil(size=size or {"shortest_edge": S, "longest_edge": S})


def _tie_free(mask_logits, class_logits, resized, original):
    """True when no kept query's owned/own area ratio is within float error of the 0.8 threshold (where
    transformers' > and the reference's >= legitimately differ)."""
    num_classes = class_logits.shape[-1] - 1
    scores, labels = class_logits.softmax(-1).max(-1)
    keep = labels.ne(num_classes) & (scores > 0.8)
    probs = naive_upsample(mask_logits, S, resized, original)[keep].sigmoid()
    owner = (scores[keep][:, None, None] * probs).argmax(0)
    for k in range(int(keep.sum())):
        own = int((probs[k] >= 0.5).sum())
        if own and abs(int((owner == k).sum()) / own - 0.8) < 1e-6:
            return False
    return True


def test_panoptic_matches_transformers_processor():
    originals = [(96, 64), (48, 64), (10 * 3, 200), (64, 64)]
    resized = [padded_size(*o, S) for o in originals]
    assert resized == [get_size_with_aspect_ratio(o, S, S) for o in originals]  # both resize the same way
    compared = 0
    for seed in range(8):
        logits = [synthetic_logits(40, NUM_CLASSES, S // 4, seed * 10 + i) for i in range(len(originals))]
        if not all(_tie_free(m, c, r, o) for (m, c), r, o in zip(logits, resized, originals, strict=True)):
            continue
        mask_logits = torch.stack([m for m, _ in logits])
        class_logits = torch.stack([c for _, c in logits])
        theirs = _processor().post_process_panoptic_segmentation(
            Outputs(mask_logits, class_logits), target_sizes=originals, threshold=0.8, mask_threshold=0.5,
            overlap_mask_area_threshold=0.8, stuff_classes=sorted(STUFF))
        for i, original in enumerate(originals):
            ours = panoptic_segmentation(mask_logits[i], class_logits[i], S, resized[i], original, STUFF)
            their_map = theirs[i]["segmentation"].long().numpy()
            # Same segments up to renumbering: a one-to-one id map that turns one map into the other.
            pairs = {(int(a), int(b)) for a, b in zip(ours.segment_map.ravel(), their_map.ravel(), strict=True)}
            mapping = dict(pairs)
            assert len(mapping) == len(pairs) == len(set(mapping.values())) and mapping.get(-1, -1) == -1
            their_segments = {s["id"]: s for s in theirs[i]["segments_info"]}
            assert len(their_segments) == len(ours.segments)
            for segment in ours.segments:
                match = their_segments[mapping[segment["id"]]]
                assert match["label_id"] == segment["category_id"]
                assert match["score"] == pytest.approx(segment["score"], abs=1e-6)
            compared += len(ours.segments)
    assert compared >= 20


def _assert_same_semantic(ours: np.ndarray, theirs) -> None:
    """Equal class maps, except where float rounding may pick another class of (nearly) the same score."""
    scores = theirs.segmentation_scores.numpy()
    want = theirs.segmentation.numpy()
    assert ours.shape == want.shape and (ours == want).mean() > 0.99
    ours_score = np.take_along_axis(scores, ours[None].astype(np.int64), 0)[0]
    np.testing.assert_allclose(ours_score, scores.max(0), rtol=0, atol=1e-5)


@pytest.mark.parametrize("original", [(32, 80), (100, 40), (64, 64), (40, 130)])
def test_semantic_matches_transformers_processor(original):
    resized = window_size(*original, S)
    assert resized == get_size_with_aspect_ratio(original, S, None)
    image = np.zeros((*original, 3), np.uint8)
    windows, starts, _ = sliding_windows(image, S)
    g = torch.Generator().manual_seed(sum(original))
    mask_logits = torch.randn(len(starts), 20, S // 4, S // 4, generator=g) * 3
    class_logits = torch.randn(len(starts), 20, NUM_CLASSES + 1, generator=g) * 3
    offsets = [torch.tensor([0, s, s + S]) for s in starts]
    theirs = _processor(shortest_edge=S).post_process_semantic_segmentation(
        Outputs(mask_logits, class_logits, offsets), target_sizes=[original], size={"shortest_edge": S,
                                                                                    "longest_edge": None},
        return_segmentation_scores=True)[0]
    ours = semantic_segmentation(mask_logits, class_logits, S, starts, resized, original)
    assert ours.shape == original and ours.dtype == np.int32
    _assert_same_semantic(ours, theirs)
    # Doing the classes a few at a time (a panorama's memory bound) changes nothing.
    chunked = semantic_segmentation(mask_logits, class_logits, S, starts, resized, original, chunk_bytes=1)
    _assert_same_semantic(chunked, theirs)


@pytest.mark.parametrize("original", [(48, 64), (96, 64), (64, 64), (30, 200)])
def test_padded_input_matches_transformers_pixels(original):
    rgb = np.random.default_rng(0).integers(0, 256, (*original, 3), dtype=np.uint8)
    padded, resized = resize_and_pad(Image.fromarray(rgb), S)
    assert padded.shape == (3, S, S) and padded.dtype == torch.uint8
    assert resized == get_size_with_aspect_ratio(original, S, S)
    assert (padded[:, resized[0]:] == 0).all() and (padded[:, :, resized[1]:] == 0).all()
    theirs = _processor()(images=[Image.fromarray(rgb)], do_pad=True, return_tensors="pt")["pixel_values"]
    ours = (padded[None].float() / 255 - IMAGENET_MEAN) / IMAGENET_STD
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


@pytest.mark.parametrize("original", [(32, 80), (100, 40), (64, 64)])
def test_windows_match_transformers_pixels(original):
    rgb = np.random.default_rng(1).integers(0, 256, (*original, 3), dtype=np.uint8)
    windows, starts, resized = sliding_windows(rgb, S)
    out = _processor(shortest_edge=S)(images=[Image.fromarray(rgb)], do_split_image=True, return_tensors="pt")
    assert [int(o[1]) for o in out["patch_offsets"]] == starts
    ours = (windows.float() / 255 - IMAGENET_MEAN) / IMAGENET_STD
    torch.testing.assert_close(ours, out["pixel_values"], atol=1e-5, rtol=0)


def test_predictions_match_transformers_end_to_end(tmp_path):
    """Same weights, same photo: our Predictor against transformers' processor + model + post-processing."""
    from eomt import Predictor, load_model
    from tests.oracles import hf_model

    reference = hf_model(32, 2, 2, 1, num_labels=NUM_CLASSES, num_queries=3, seed=1)
    with torch.no_grad():  # confident classes and saturated masks, so that there are segments to compare
        reference.class_predictor.weight.mul_(150.0)
        reference.mask_head.fc3.weight.mul_(300.0)
    reference.save_pretrained(tmp_path)
    predictor = Predictor(load_model(tmp_path), stuff_classes=STUFF)
    rng = np.random.default_rng(5)
    compared = 0
    for original in [(48, 64), (96, 64), (64, 64)]:
        photo = Image.fromarray(rng.integers(0, 256, (*original, 3), dtype=np.uint8))
        inputs = _processor()(images=[photo], do_pad=True, return_tensors="pt")
        with torch.no_grad():
            outputs = reference(pixel_values=inputs["pixel_values"])
        theirs = _processor().post_process_panoptic_segmentation(outputs, target_sizes=[original],
                                                                stuff_classes=sorted(STUFF))[0]
        ours = predictor.panoptic(photo)
        np.testing.assert_array_equal(ours.segment_map, theirs["segmentation"].long().numpy())
        assert [(s["id"], s["category_id"]) for s in ours.segments] == [
            (s["id"], s["label_id"]) for s in theirs["segments_info"]]
        compared += len(ours.segments)

        inputs = _processor(shortest_edge=S)(images=[photo], do_split_image=True, return_tensors="pt")
        with torch.no_grad():
            outputs = reference(pixel_values=inputs["pixel_values"], patch_offsets=inputs["patch_offsets"])
        theirs = _processor(shortest_edge=S).post_process_semantic_segmentation(
            outputs, target_sizes=[original], size={"shortest_edge": S, "longest_edge": None},
            return_segmentation_scores=True)[0]
        _assert_same_semantic(predictor.semantic(photo), theirs)
    assert compared >= 3
