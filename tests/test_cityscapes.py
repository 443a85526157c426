"""Cityscapes reader on zips in the real layout (synthetic.cityscapes: per-city folders, README and license at the
top, 16-bit instanceIds, label ids outside the 19 classes), on the extracted folders, and its errors."""

from __future__ import annotations

import io
import pickle
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eomt.classes import cityscapes_classes
from segdata.cityscapes import IMAGES_ZIP, LABELS_ZIP, Cityscapes
from segdata.sources import DatasetError
from synthetic.cityscapes import BICYCLE, CAR, CARAVAN, toy_images, write_cityscapes_zips

# datasets-reference.md: the 19 train ids by label id; every other label id is ignored.
TRAIN_IDS = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
             27: 14, 28: 15, 31: 16, 32: 17, 33: 18}


@pytest.fixture(scope="module")
def images():
    return {"val": toy_images(seed=1), "train": toy_images(seed=2, cities=("aachen",), per_city=1)}


@pytest.fixture(scope="module")
def zips(tmp_path_factory, images):
    return write_cityscapes_zips(tmp_path_factory.mktemp("cityscapes"), images)


def in_order(images):
    return sorted(images, key=lambda image: (image.city, image.stem))


def expected_semantic(label_ids: np.ndarray) -> np.ndarray:
    expected = np.full(label_ids.shape, 255)
    for label, train_id in TRAIN_IDS.items():
        expected[label_ids == label] = train_id
    return expected


def test_zip_layout_and_awkward_parts(zips, images):
    names = zipfile.ZipFile(zips / LABELS_ZIP).namelist()
    image = in_order(images["val"])[0]
    assert {"README", "license.txt"} <= set(names)
    assert f"gtFine/val/{image.city}/{image.stem}_gtFine_labelIds.png" in names
    member = f"gtFine/val/{image.city}/{image.stem}_gtFine_instanceIds.png"
    assert Image.open(io.BytesIO(zipfile.ZipFile(zips / LABELS_ZIP).read(member))).mode in ("I", "I;16")
    assert f"leftImg8bit/val/{image.city}/{image.stem}_leftImg8bit.png" in zipfile.ZipFile(zips / IMAGES_ZIP).namelist()
    all_labels = np.concatenate([i.label_ids.ravel() for i in images["val"]])
    assert {0, 1, 6, CARAVAN} <= set(all_labels.tolist())  # unlabeled, ego vehicle, ground, caravan: ignored


def assert_ground_truth(ds: Cityscapes, images):
    ordered = in_order(images)
    assert ds.stems == [i.stem for i in ordered]
    assert ds.keys == [f"{i.city}/{i.stem}_leftImg8bit.png" for i in ordered]
    classes = cityscapes_classes()
    for index, image in enumerate(ordered):
        sample = ds.sample(index)
        assert (np.asarray(sample.image) == image.photo).all() and sample.image.mode == "RGB"  # PNG: lossless
        assert (sample.semantic == expected_semantic(image.label_ids)).all() and sample.semantic.dtype == np.uint8
        # cityscapesScripts' panoptic: every id of a train-id label is a segment, thing ids < 1000 are crowd.
        ids = image.instance_ids
        labels = np.where(ids < 1000, ids, ids // 1000)
        kept = sorted(v for v in np.unique(ids).tolist() if int(labels[ids == v][0]) in TRAIN_IDS)
        assert (sample.segment_map == np.where(np.isin(ids, kept), ids, 0)).all()
        segments = []
        for v in kept:
            train_id = TRAIN_IDS[v if v < 1000 else v // 1000]
            ys, xs = np.nonzero(ids == v)
            segments.append({"id": v, "category_id": train_id, "isthing": classes[train_id].isthing,
                             "iscrowd": int(classes[train_id].isthing and v < 1000), "area": len(ys),
                             "bbox": [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]})
        assert sample.segments == segments
        assert any(s["id"] == BICYCLE and s["iscrowd"] for s in segments)  # the group of bicycles
        assert not any(s["id"] // 1000 == CARAVAN for s in segments)  # caravans are void


def test_zips_give_the_written_ground_truth(zips, images):
    ds = Cityscapes(zips)
    assert ds.name == "cityscapes" and ds.split == "val" and ds.layout == "zip" and len(ds) == 6
    assert ds.tasks == {"semantic", "panoptic"} and ds.classes == cityscapes_classes()
    assert ds.image_ids == list(range(6))
    assert_ground_truth(ds, images["val"])
    training = Cityscapes(zips, split="training")
    assert training.split == "train" and training.stems == [images["train"][0].stem]
    with pytest.raises(ValueError, match="split must be one of"):
        Cityscapes(zips, split="test")


def test_extracted_folders_read_like_the_zips(zips, images, tmp_path):
    for name in (IMAGES_ZIP, LABELS_ZIP):
        zipfile.ZipFile(zips / name).extractall(tmp_path)
    ds = Cityscapes(tmp_path)
    assert ds.layout == "extracted"
    assert_ground_truth(ds, images["val"])


def test_without_instance_ids_only_semantic(images, tmp_path):
    write_cityscapes_zips(tmp_path, {"val": images["val"]}, instance_ids=False)
    ds = Cityscapes(tmp_path)
    assert ds.tasks == {"semantic"}
    sample = ds.sample(0)
    assert sample.segment_map is None and (sample.semantic == expected_semantic(in_order(images["val"])[0].label_ids)).all()
    with pytest.raises(DatasetError, match="no panoptic ground truth"):
        ds.panoptic(0)


def rewrite(path: Path, changes: dict):
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            if changes.get(name, data) is not None:
                archive.writestr(name, changes.get(name, data))


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("what", ["missing labelIds", "unknown label", "rgb labelIds", "bad instance",
                                  "corrupt image", "wrong size"])
def test_unusable_files_are_named_and_the_rest_readable(zips, images, tmp_path, what):
    for name in (IMAGES_ZIP, LABELS_ZIP):
        shutil.copy(zips / name, tmp_path)
    image = in_order(images["val"])[2]
    base = f"val/{image.city}/{image.stem}"
    labels, instances = f"gtFine/{base}_gtFine_labelIds.png", f"gtFine/{base}_gtFine_instanceIds.png"
    zip_name, member = LABELS_ZIP, labels
    if what == "missing labelIds":
        rewrite(tmp_path / LABELS_ZIP, {labels: None})
        message = "missing"
    elif what == "unknown label":
        bad = image.label_ids.copy()
        bad[0, 0] = 40
        rewrite(tmp_path / LABELS_ZIP, {labels: png(bad)})
        message = r"values \[40\] are not Cityscapes label ids \(0..33\)"
    elif what == "rgb labelIds":
        rewrite(tmp_path / LABELS_ZIP, {labels: png(np.zeros((*image.label_ids.shape, 3), np.uint8))})
        message = "a labelIds annotation must be an 8-bit single-channel PNG, this one is mode RGB"
    elif what == "bad instance":
        bad = image.instance_ids.copy()
        bad[0, 0] = 7005  # road has no instances
        rewrite(tmp_path / LABELS_ZIP, {instances: png(bad.astype(np.uint16))})
        member, message = instances, r"ids \[7005\] are neither label ids"
    elif what == "wrong size":
        rewrite(tmp_path / LABELS_ZIP, {labels: png(np.full((4, 4), CAR, np.uint8))})
        message = "labelIds annotation is 4x4, the image is 64x32"
    else:
        zip_name, member = IMAGES_ZIP, f"leftImg8bit/{base}_leftImg8bit.png"
        rewrite(tmp_path / IMAGES_ZIP, {member: b"\x89PNG broken"})
        message = "cannot decode image"
    ds = Cityscapes(tmp_path)
    with pytest.raises(DatasetError, match=f"^{tmp_path / zip_name}:{member}: {message}"):
        ds.sample(2)
    for i in range(len(ds)):
        if i != 2:
            assert ds.sample(i).semantic is not None


def test_no_cityscapes_and_pickling(zips, tmp_path):
    with pytest.raises(DatasetError, match=f"{tmp_path}: no Cityscapes found. Looked for {IMAGES_ZIP}"):
        Cityscapes(tmp_path)
    ds = Cityscapes(zips)
    first = ds.sample(1).semantic
    copy = pickle.loads(pickle.dumps(ds))
    assert (copy.sample(1).semantic == first).all()
