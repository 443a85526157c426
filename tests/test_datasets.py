"""The readers' common interface (segdata.sample) and `open_dataset`, which picks the reader from the files."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
from PIL import Image

from dump.model_specs import ModelSpec
from dump.run import DumpOptions, data_fingerprint, dataset_identity
from eomt.classes import ClassInfo, ClassTable
from segdata.ade20k import ADE20K
from segdata.cityscapes import Cityscapes
from segdata.coco import COCO
from segdata.detect import detect, open_dataset
from segdata.image_folder import ImageFolder
from segdata.sample import TASKS, Sample
from segdata.sources import DatasetError
from synthetic import cityscapes, coco
from synthetic.ade20k import write_toy_ade20k


@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("datasets")
    photos = base / "photos"
    photos.mkdir()
    for k in range(2):
        Image.new("RGB", (8, 6), (k * 100, 0, 0)).save(photos / f"p{k}.png")
    return {"ade20k": write_toy_ade20k(base / "ade", 3), "coco": coco.write_coco_zips(base / "coco", coco.toy_images(3)),
            "cityscapes": cityscapes.write_cityscapes_zips(base / "city", {"val": cityscapes.toy_images(per_city=1)}),
            "images": photos}


READERS = {"ade20k": ADE20K, "coco": COCO, "cityscapes": Cityscapes, "images": ImageFolder}


@pytest.mark.parametrize("name", list(READERS))
def test_one_interface_for_every_reader(roots, name):
    ds = open_dataset(roots[name], "validation", False)
    assert type(ds) is READERS[name] and ds.name == name
    assert detect(roots[name]) == ([] if name == "images" else [name])
    assert all(isinstance(c, ClassInfo) for c in ds.classes) and [c.id for c in ds.classes] == list(range(len(ds.classes)))
    assert ds.tasks <= set(TASKS) and len(ds.keys) == len(ds.stems) == len(ds.image_ids) == len(ds) > 0
    assert ds.has_ground_truth == bool(ds.tasks)
    for index in range(len(ds)):
        image = ds.read_image(index)
        sample = ds.sample(index)
        assert isinstance(sample, Sample) and sample.stem == ds.stems[index] and image.mode == "RGB"
        assert (np.asarray(sample.image) == np.asarray(image)).all()
        size = (image.height, image.width)
        assert (sample.segment_map is not None) == ("panoptic" in ds.tasks)
        assert (sample.semantic is not None) == ("semantic" in ds.tasks)
        assert (sample.instances is not None) == ("instance" in ds.tasks)
        if "panoptic" in ds.tasks:
            segment_map, segments = ds.panoptic(index)
            assert segment_map.shape == size and segment_map.dtype == np.int32
            assert (segment_map == sample.segment_map).all() and segments == sample.segments
            assert {s["category_id"] for s in segments} <= set(range(len(ds.classes)))
            assert all({"id", "category_id", "isthing", "iscrowd", "area", "bbox"} <= s.keys() for s in segments)
            assert {s["id"] for s in segments} == set(np.unique(segment_map).tolist()) - {0}
        if "semantic" in ds.tasks:
            semantic = ds.semantic(index)
            assert semantic.shape == size and semantic.dtype == np.uint8 and (semantic == sample.semantic).all()
            assert set(np.unique(semantic).tolist()) <= set(range(len(ds.classes))) | {255}
    if ds.tasks:  # the dump slices indices for --limit; a pickled reader reads the same
        copy = pickle.loads(pickle.dumps(ds))
        assert copy.stems == ds.stems and (np.asarray(copy.read_image(1)) == np.asarray(ds.read_image(1))).all()
    assert [c["id"] for c in ClassTable(tuple(ds.classes)).entries()] == [c.id for c in ds.classes]


def test_identity_records_the_dataset(roots):
    ade = open_dataset(roots["ade20k"], "validation", True)
    options = DumpOptions(out=".", data=roots["ade20k"], models=(ModelSpec("m", "unused"),), split="validation",
                          skip_constant=True)
    assert dataset_identity(ade, options) == {
        "kind": "ade20k", "root": str(roots["ade20k"].resolve()), "split": "validation", "skip_constant": True,
        "has_ground_truth": True, "fingerprint": data_fingerprint(roots["ade20k"])}
    city = open_dataset(roots["cityscapes"], "validation")
    options = DumpOptions(out=".", data=roots["cityscapes"], models=(ModelSpec("m", "unused"),),
                          split="validation")
    assert dataset_identity(city, options) == {
        "kind": "cityscapes", "root": str(roots["cityscapes"].resolve()), "split": "val",
        "tasks": ["panoptic", "semantic"], "has_ground_truth": True,
        "fingerprint": data_fingerprint(roots["cityscapes"])}


def test_explicit_ambiguous_and_missing(roots, tmp_path):
    assert type(open_dataset(roots["coco"], "val2017", dataset="coco")) is COCO
    with pytest.raises(ValueError, match="dataset must be one of"):
        open_dataset(roots["coco"], "val2017", dataset="voc")
    with pytest.raises(DatasetError, match="no Cityscapes found"):
        open_dataset(roots["coco"], "validation", dataset="cityscapes")
    both = tmp_path / "both"
    shutil.copytree(roots["coco"], both)
    for name in ("ADEChallengeData2016.zip", "annotations_instance.zip"):
        shutil.copy(roots["ade20k"] / name, both)
    with pytest.raises(DatasetError, match="holds files of ade20k and coco; say which dataset to read"):
        open_dataset(both, "validation")
    assert type(open_dataset(both, "validation", dataset="ade20k")) is ADE20K
    with pytest.raises(ValueError, match="constant annotation is EoMT's ADE20K validation"):
        open_dataset(roots["coco"], "validation", skip_constant=True)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DatasetError) as error:
        open_dataset(empty, "validation")
    message = str(error.value)
    for looked_for in ("ADEChallengeData2016.zip", "panoptic_annotations_trainval2017.zip",
                       "leftImg8bit_trainvaltest.zip", "no images found"):
        assert looked_for in message
    with pytest.raises(FileNotFoundError, match="no such folder"):
        open_dataset(tmp_path / "nowhere", "validation")
