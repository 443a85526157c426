"""Class and content filters, signed ranking and the per-session image list, on hand-made and generated data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

from dump.folder import GT
from eomt.classes import ClassInfo, ClassTable
from synthetic.folders import make_folder
from viewer import navigation
from viewer.filters import ImageFilter, filter_images, rank_images
from viewer.index import load_folder

WALL, SKY, PERSON = 0, 2, 12  # ADE20K ids: two stuff classes and a thing


def hand_made_index():
    """Four images; GT counts: 0 = wall + sky + 2 persons, 1 = wall, 2 = 3 persons, 3 = nothing labelled."""
    classes = ClassTable((ClassInfo(WALL, "wall", False, (1, 1, 1)), ClassInfo(SKY, "sky", False, (2, 2, 2)),
                          ClassInfo(PERSON, "person", True, (3, 3, 3))))
    gt = np.array([[1, 1, 2], [1, 0, 0], [0, 0, 3], [0, 0, 0]], dtype=np.int32)
    model = np.array([[1, 0, 1], [0, 1, 0], [0, 0, 0], [0, 0, 0]], dtype=np.int32)
    metrics = {
        "A": pd.DataFrame({"pq": [0.5, 0.9, np.nan, 0.2], "sq": 0.5, "rq": 0.5, "tp": [1, 2, 0, 1],
                           "fp": [0, 1, 2, 0], "fn": [3, 0, 0, 1]}),
        "B": pd.DataFrame({"pq": [0.6, 0.1, 0.3, 0.2], "sq": 0.5, "rq": 0.5, "tp": [1, 1, 1, 1],
                           "fp": [0, 0, 0, 0], "fn": [0, 0, 0, 0]}),
    }
    return SimpleNamespace(n_images=4, classes=classes, instance_counts={GT: gt, "A": model},
                           available={GT: np.ones(4, bool), "A": np.array([True, True, True, False])},
                           models=["A", "B"], image_metrics=metrics, model_tasks={"A": "panoptic", "B": "panoptic"},
                           images=[f"val_{i:04d}" for i in range(4)])


@pytest.mark.parametrize(("image_filter", "expected"), [
    (ImageFilter(), [0, 1, 2, 3]),
    (ImageFilter(classes=(WALL, PERSON), match="all"), [0]),
    (ImageFilter(classes=(WALL, PERSON), match="any"), [0, 1, 2]),
    (ImageFilter(classes=(SKY,)), [0]),
    (ImageFilter(min_classes=2), [0]),
    (ImageFilter(max_classes=1), [1, 2, 3]),
    (ImageFilter(min_instances=3), [0, 2]),  # all classes: 4, 1, 3, 0 instances
    (ImageFilter(max_instances=1), [1, 3]),
    (ImageFilter(classes=(PERSON,), min_instances=3), [2]),  # instances of the chosen classes only
    (ImageFilter(classes=(PERSON,), max_instances=2), [0]),
    (ImageFilter(classes=(WALL, SKY), match="any", min_classes=1, max_classes=2), [1]),
    (ImageFilter(classes=(SKY,), source="A"), [1]),  # look in a model's prediction instead
    (ImageFilter(source="A"), [0, 1, 2]),  # an image without that model's prediction contains nothing
    (ImageFilter(classes=(999,)), []),  # a class the folder does not know
])
def test_filters(image_filter, expected):
    assert filter_images(hand_made_index(), image_filter).tolist() == expected


def test_a_filter_on_an_unknown_source_says_so():
    with pytest.raises(ValueError, match="unknown source"):
        filter_images(hand_made_index(), ImageFilter(source="nobody"))


@pytest.mark.parametrize(("order", "expected"), [
    ("a_better", [1, 3, 0]),  # A - B: 0.8, 0.0, -0.1 (image 2 undefined for A)
    ("b_better", [0, 3, 1]),
    ("largest", [1, 0, 3]),
])
def test_signed_ranking(order, expected):
    ranking = rank_images(hand_made_index(), [0, 1, 2, 3], "A", "B", order=order)
    assert ranking.positions.tolist() == expected
    assert ranking.left_out == 1
    assert ranking.table["image"].tolist() == [f"val_{p:04d}" for p in expected]
    assert ranking.table["ΔPQ A−B"].to_numpy() == pytest.approx([{0: -0.1, 1: 0.8, 3: 0.0}[p] for p in expected])
    assert ranking.table["FN A"].tolist() == [[3, 0, 0, 1][p] for p in expected]  # counts beside the score


def test_ranking_keeps_the_top_n_of_the_given_images():
    index = hand_made_index()
    assert rank_images(index, [0, 1, 2, 3], "A", "B", "a_better", top_n=2).positions.tolist() == [1, 3]
    assert rank_images(index, [0, 3], "A", "B", "b_better").positions.tolist() == [0, 3]
    with pytest.raises(ValueError, match="unknown model"):
        rank_images(index, [0], "A", "C")


def test_filters_and_ranking_agree_with_the_annotations_of_a_generated_folder(tmp_path):
    index = load_folder(make_folder(tmp_path / "out", n_images=12, models=("alpha", "beta"), seed=11))
    gt_classes = [{s["category_id"] for s in index.segments(GT, p)} for p in range(index.n_images)]
    common = sorted({c for classes in gt_classes for c in classes}, key=lambda c: -sum(c in g for g in gt_classes))
    a, b = common[0], common[1]
    assert filter_images(index, ImageFilter(classes=(a, b), match="all")).tolist() == \
        [p for p, classes in enumerate(gt_classes) if {a, b} <= classes]
    assert filter_images(index, ImageFilter(classes=(a, b), match="any")).tolist() == \
        [p for p, classes in enumerate(gt_classes) if classes & {a, b}]
    assert filter_images(index, ImageFilter(min_classes=5)).tolist() == \
        [p for p, classes in enumerate(gt_classes) if len(classes) >= 5]

    ranking = rank_images(index, range(index.n_images), "alpha", "beta", "b_better")
    delta = (index.image_metrics["alpha"]["pq"] - index.image_metrics["beta"]["pq"]).to_numpy()
    assert delta[ranking.positions].tolist() == sorted(delta[ranking.positions].tolist())
    assert len(ranking.positions) + ranking.left_out == index.n_images


def test_navigation_steps_through_the_list_and_stops_at_its_ends():
    view = navigation.new_view([4, 7, 9], "filtered")
    assert (view["current"], view["cursor"]) == (4, 0)
    view = navigation.step(view, +1)
    assert view["current"] == 7
    view = navigation.step(navigation.step(view, +1), +1)
    assert (view["current"], view["cursor"]) == (9, 2)  # stays on the last one
    assert navigation.step(view, -5)["current"] == 4


def test_jumping_outside_the_list_keeps_the_list():
    view = navigation.go_to(navigation.new_view([4, 7, 9]), 5)
    assert (view["current"], view["cursor"], view["positions"]) == (5, None, [4, 7, 9])
    assert navigation.step(view, +1)["current"] == 4
    assert navigation.step(view, -1)["current"] == 9
    assert navigation.go_to(view, 7)["cursor"] == 1


def test_an_empty_list_has_no_current_image():
    view = navigation.new_view([])
    assert view["current"] is None
    assert navigation.step(view, 1) == view
