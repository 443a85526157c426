"""The toy scene generator: deterministic, in the ADE20K encodings, with the promised classes, occlusion and void."""

from __future__ import annotations

import numpy as np

from eomt.classes import ade20k_classes
from segdata.ade20k import ADE20K, build_panoptic
from segdata.scenes import (
    CLASS_IDS,
    SIZE_RANGE,
    STUFF_CLASSES,
    THING_CLASSES,
    split_samples,
    toy_scene,
    write_scenes,
)

CLASSES = ade20k_classes()


def test_class_choice():
    assert len(STUFF_CLASSES) >= 10 and len(THING_CLASSES) >= 8
    assert all(not CLASSES[CLASS_IDS[name]].isthing for name in STUFF_CLASSES)
    assert all(CLASSES[CLASS_IDS[name]].isthing for name in THING_CLASSES)


def test_deterministic_and_independent_of_split_length():
    a = toy_scene(0, "validation", 3)
    b = list(split_samples("validation", 5))[3][1:]
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(toy_scene(0, "training", 3)[0], a[0])  # splits differ
    assert not np.array_equal(toy_scene(1, "validation", 3)[0], a[0])  # seeds differ


def test_scenes_are_consistent_ade20k_annotations():
    samples = split_samples("training", 40)
    stuff_seen, things_seen, instances_per_class = set(), set(), []
    void_images = 0
    for _, photo, semantic, instance in samples:
        height, width = semantic.shape
        assert SIZE_RANGE[0] <= height <= SIZE_RANGE[1] and SIZE_RANGE[0] <= width <= SIZE_RANGE[1]
        assert photo.shape == (height, width, 3) and photo.dtype == np.uint8
        assert photo.std() > 20  # textured, not blank
        segment_map, segments = build_panoptic(semantic, instance)  # raises on an inconsistent instance PNG
        # Thing pixels carry a thing class in the semantic PNG exactly where an instance is.
        on_instance = instance[..., 1] > 0
        thing_value = np.array([c.isthing for c in CLASSES])[np.maximum(semantic.astype(int) - 1, 0)] & (semantic > 0)
        np.testing.assert_array_equal(on_instance, thing_value)
        void_images += bool((segment_map == 0).any())
        counts: dict[int, int] = {}
        for s in segments:
            (things_seen if s["isthing"] else stuff_seen).add(s["category_id"])
            if s["isthing"]:
                counts[s["category_id"]] = counts.get(s["category_id"], 0) + 1
        instances_per_class += list(counts.values())
    assert len(stuff_seen) >= 10 and len(things_seen) >= 8
    assert max(instances_per_class) >= 3  # several instances of one class in one image
    assert void_images >= 5


def test_written_zips_read_back(tmp_path):
    write_scenes(tmp_path, num_train=3, num_val=2, seed=0)
    val = ADE20K(tmp_path, "validation")
    assert val.stems == ["ADE_val_00000001", "ADE_val_00000002"]
    assert len(ADE20K(tmp_path, "training")) == 3
    sample = val[1]
    photo, semantic, _ = toy_scene(0, "validation", 1)
    assert sample.image.size == (photo.shape[1], photo.shape[0])
    np.testing.assert_array_equal(sample.semantic, semantic)
    assert np.abs(np.asarray(sample.image).astype(int) - photo).mean() < 8  # JPEG of a noisy photo
