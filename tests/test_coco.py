"""COCO reader on zips in the real layout (synthetic.coco: nested panoptic zip, id gaps, crowd RLE, polygons),
on the extracted layouts, and its errors; the ground truth checked against what the writer put in and against
pycocotools."""

from __future__ import annotations

import functools
import hashlib
import io
import json
import multiprocessing
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO as CocoApi

from eomt.classes import coco_panoptic_classes
from metrics.coco_panoptic import id2rgb
from segdata.coco import COCO, INSTANCES_ZIP, PANOPTIC_ZIP
from segdata.sources import DatasetError
from synthetic.coco import instances_document, toy_images, write_coco_zips

CONTIGUOUS = {c.coco_id: c.id for c in coco_panoptic_classes()}
N = 5


@pytest.fixture(scope="module")
def images():
    return toy_images(N, seed=3)


@pytest.fixture(scope="module")
def zips(tmp_path_factory, images):
    return write_coco_zips(tmp_path_factory.mktemp("coco"), images)


def by_name(images):
    return sorted(images, key=lambda image: image.file_name)


def test_zip_member_layout(zips, images):
    assert zipfile.ZipFile(zips / "val2017.zip").namelist()[:2] == ["val2017/", f"val2017/{images[0].file_name}"]
    panoptic = zipfile.ZipFile(zips / PANOPTIC_ZIP)
    assert {"annotations/panoptic_val2017.json", "annotations/panoptic_val2017.zip"} <= set(panoptic.namelist())
    inner = zipfile.ZipFile(io.BytesIO(panoptic.read("annotations/panoptic_val2017.zip")))
    assert f"panoptic_val2017/{images[0].file_name[:-4]}.png" in inner.namelist()
    assert "annotations/instances_val2017.json" in zipfile.ZipFile(zips / INSTANCES_ZIP).namelist()
    # The awkward parts are there: gaps in image ids, crowd RLE, several polygons, an image without instances.
    assert any(a["iscrowd"] and isinstance(a["segmentation"]["counts"], list) for i in images for a in i.instances)
    assert any(len(a["segmentation"]) > 1 for i in images for a in i.instances if not a["iscrowd"])
    assert any(not i.instances for i in images) and np.diff([i.id for i in images]).min() > 1


def jpeg_pixels(zips: Path, file_name: str) -> np.ndarray:
    with zipfile.ZipFile(zips / "val2017.zip") as archive, Image.open(archive.open(f"val2017/{file_name}")) as image:
        return np.asarray(image.convert("RGB"))


def assert_ground_truth(ds: COCO, images, zips: Path):
    assert ds.keys == [i.file_name for i in by_name(images)] and ds.image_ids == [i.id for i in by_name(images)]
    assert ds.stems == [i.file_name[:-4] for i in by_name(images)]
    classes = coco_panoptic_classes()
    for index, image in enumerate(by_name(images)):
        sample = ds.sample(index)
        assert sample.stem == image.file_name[:-4]
        assert sample.image.mode == "RGB" and (np.asarray(sample.image) == jpeg_pixels(zips, image.file_name)).all()
        assert (sample.segment_map == image.segment_map).all() and sample.segment_map.dtype == np.int32
        assert sample.segments == [
            {"id": s["id"], "category_id": CONTIGUOUS[s["category_id"]],
             "isthing": classes[CONTIGUOUS[s["category_id"]]].isthing, "iscrowd": s["iscrowd"], "area": s["area"],
             "bbox": s["bbox"]} for s in image.segments_info]
        expected = np.full(image.segment_map.shape, 255)
        for s in image.segments_info:  # crowd regions carry their class too
            expected[image.segment_map == s["id"]] = CONTIGUOUS[s["category_id"]]
        assert (sample.semantic == expected).all() and sample.semantic.dtype == np.uint8
        assert (ds.semantic(index) == expected).all()
        assert [(a["image_id"], a["category_id"], a["iscrowd"], a["area"], a["segmentation"])
                for a in sample.instances] == [(image.id, CONTIGUOUS[a["category_id"]], a["iscrowd"], a["area"],
                                                a["segmentation"]) for a in image.instances]


@pytest.mark.parametrize("compression", [zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED])
def test_zips_give_the_written_ground_truth(tmp_path, images, compression):
    write_coco_zips(tmp_path, images, panoptic_compression=compression)
    ds = COCO(tmp_path)
    assert ds.name == "coco" and ds.split == "val2017" and ds.layout == "zip" and len(ds) == N
    assert ds.tasks == {"panoptic", "semantic", "instance"} and len(ds.classes) == 133
    assert_ground_truth(ds, images, tmp_path)


def test_coco_ground_truth_is_the_file_for_pycocotools(zips, images):
    ds = COCO(zips)
    document = instances_document(by_name(images))
    ground_truth = ds.coco_ground_truth()
    assert ground_truth["categories"] == document["categories"] and ground_truth["images"] == document["images"]
    assert sorted(a["id"] for a in ground_truth["annotations"]) == sorted(a["id"] for a in document["annotations"])
    api = CocoApi()
    api.dataset = ground_truth
    api.createIndex()
    for index, image in enumerate(by_name(images)):
        for mine, annotation in zip(ds.instances(index), api.loadAnns(api.getAnnIds(imgIds=[image.id])), strict=True):
            assert mine["id"] == annotation["id"]
            assert mine["category_id"] == CONTIGUOUS[annotation["category_id"]]
            polygon_or_rle = api.annToMask(annotation)
            assert polygon_or_rle.shape == image.segment_map.shape and polygon_or_rle.sum() > 0
    subset = ds.coco_ground_truth([1, 3])
    assert [i["id"] for i in subset["images"]] == [ds.image_ids[1], ds.image_ids[3]]
    assert {a["image_id"] for a in subset["annotations"]} <= {ds.image_ids[1], ds.image_ids[3]}


def extract(zips: Path, root: Path, png_place: str) -> Path:
    """Extracted as detectron2 has it (PNGs in panoptic_val2017/), with the PNGs under annotations/, or with the
    nested PNG zip left as a file."""
    for name in ("val2017.zip", PANOPTIC_ZIP, INSTANCES_ZIP):
        zipfile.ZipFile(zips / name).extractall(root)
    nested = root / "annotations" / "panoptic_val2017.zip"
    if png_place == "detectron2":
        zipfile.ZipFile(nested).extractall(root)
        nested.unlink()
    elif png_place == "annotations":
        zipfile.ZipFile(nested).extractall(root / "annotations")
        nested.unlink()
    return root


@pytest.mark.parametrize("png_place", ["detectron2", "annotations", "nested-zip-file"])
def test_extracted_layouts_read_like_the_zips(zips, images, tmp_path, png_place):
    ds = COCO(extract(zips, tmp_path, png_place), split="validation")
    assert ds.layout == "extracted" and ds.split == "val2017"
    assert_ground_truth(ds, images, zips)


def test_either_annotation_set_alone(zips, images, tmp_path):
    shutil.copy(zips / "val2017.zip", tmp_path)
    shutil.copy(zips / INSTANCES_ZIP, tmp_path)
    instances_only = COCO(tmp_path)
    assert instances_only.tasks == {"instance"} and len(instances_only.classes) == 80
    assert instances_only.sample(0).segment_map is None and instances_only.sample(0).instances is not None
    with pytest.raises(DatasetError, match="no panoptic annotations for val2017"):
        instances_only.panoptic(0)
    (tmp_path / INSTANCES_ZIP).unlink()
    shutil.copy(zips / PANOPTIC_ZIP, tmp_path)
    panoptic_only = COCO(tmp_path)
    assert panoptic_only.tasks == {"panoptic", "semantic"} and len(panoptic_only.classes) == 133
    with pytest.raises(DatasetError, match="no instance annotations"):
        panoptic_only.instances(0)


def test_missing_parts_are_named(zips, tmp_path):
    with pytest.raises(DatasetError, match="no COCO annotations for val2017. Looked for"):
        COCO(tmp_path)
    shutil.copy(zips / INSTANCES_ZIP, tmp_path)
    with pytest.raises(DatasetError, match="COCO annotations but no images: looked for val2017.zip and val2017/"):
        COCO(tmp_path)
    with pytest.raises(DatasetError, match="no COCO annotations for train2017"):
        COCO(zips, split="training")
    with pytest.raises(ValueError, match="split must be one of"):
        COCO(zips, split="test")


def rewrite(path: Path, changes: dict, inner: str | None = None):
    """Replaces (bytes) or removes (None) members of a zip, or of the zip stored as member `inner`."""
    with zipfile.ZipFile(path) as archive:
        members = {info.filename: archive.read(info) for info in archive.infolist()}
    if inner is not None:
        buffer = io.BytesIO(members[inner])
        rewrite(buffer, changes)
        members[inner] = buffer.getvalue()
        changes = {}
    target = path if isinstance(path, io.BytesIO) else open(path, "wb")  # noqa: SIM115
    target.seek(0)
    target.truncate()
    with zipfile.ZipFile(target, "w") as archive:
        for name, data in members.items():
            if changes.get(name, data) is not None:
                archive.writestr(name, changes.get(name, data))
    if target is not path:
        target.close()


def broken_copy(zips: Path, tmp_path: Path) -> Path:
    for name in ("val2017.zip", PANOPTIC_ZIP, INSTANCES_ZIP):
        shutil.copy(zips / name, tmp_path)
    return tmp_path


def png(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def assert_others_readable(ds: COCO, broken: int):
    for i in range(len(ds)):
        if i != broken:
            assert ds.sample(i).segment_map is not None


def test_missing_png_in_the_nested_zip(zips, images, tmp_path):
    root = broken_copy(zips, tmp_path)
    stem = by_name(images)[2].file_name[:-4]
    rewrite(root / PANOPTIC_ZIP, {f"panoptic_val2017/{stem}.png": None}, inner="annotations/panoptic_val2017.zip")
    ds = COCO(root)
    where = f"{root / PANOPTIC_ZIP}:annotations/panoptic_val2017.zip:panoptic_val2017/{stem}.png: missing"
    with pytest.raises(DatasetError, match=f"^{where}$"):
        ds.sample(2)
    assert ds.read_image(2).size and ds.instances(2) is not None
    assert_others_readable(ds, 2)


@pytest.mark.parametrize("what", ["corrupt jpeg", "unlisted segment", "grayscale png", "unknown category",
                                  "wrong size"])
def test_unusable_files_are_named_and_the_rest_readable(zips, images, tmp_path, what):
    root = broken_copy(zips, tmp_path)
    image = by_name(images)[1]
    stem = image.file_name[:-4]
    inner, member = "annotations/panoptic_val2017.zip", f"panoptic_val2017/{stem}.png"
    where = f"{root / PANOPTIC_ZIP}:{inner}:{member}"
    if what == "corrupt jpeg":
        rewrite(root / "val2017.zip", {f"val2017/{image.file_name}": b"\xff\xd8 not a jpeg"})
        where, message = f"{root / 'val2017.zip'}:val2017/{image.file_name}", "cannot decode image"
    elif what == "unlisted segment":
        segment_map = image.segment_map.copy()
        segment_map[0, 0] = 77
        rewrite(root / PANOPTIC_ZIP, {member: png(id2rgb(segment_map))}, inner=inner)
        message = r"segment ids \[77\] are in the PNG but not in the image's segments_info"
    elif what == "grayscale png":
        rewrite(root / PANOPTIC_ZIP, {member: png(np.zeros(image.segment_map.shape, np.uint8))}, inner=inner)
        message = "a panoptic PNG must be RGB, this one is mode L"
    elif what == "wrong size":
        rewrite(root / PANOPTIC_ZIP, {member: png(np.zeros((5, 7, 3), np.uint8))}, inner=inner)
        message = "annotation is 7x5, the image is"
    else:
        document = json.loads(zipfile.ZipFile(root / PANOPTIC_ZIP).read("annotations/panoptic_val2017.json"))
        document["annotations"][1]["segments_info"][0]["category_id"] = 12  # a gap in the COCO ids
        rewrite(root / PANOPTIC_ZIP, {"annotations/panoptic_val2017.json": json.dumps(document).encode()})
        where, message = f"{root / PANOPTIC_ZIP}:annotations/panoptic_val2017.json", f"image {image.id}: segment"
    ds = COCO(root)
    with pytest.raises(DatasetError, match=f"^{where}: {message}"):
        ds.sample(1)
    assert_others_readable(ds, 1)


def test_unknown_categories_in_the_file_are_refused(zips, tmp_path):
    root = broken_copy(zips, tmp_path)
    document = json.loads(zipfile.ZipFile(root / INSTANCES_ZIP).read("annotations/instances_val2017.json"))
    document["categories"].append({"id": 91, "name": "hair brush"})
    rewrite(root / INSTANCES_ZIP, {"annotations/instances_val2017.json": json.dumps(document).encode()})
    with pytest.raises(DatasetError, match=r"instances_val2017.json: category 91 \(hair brush\) is not one of the "
                                           "80 COCO categories"):
        COCO(root)


def test_file_names_cannot_leave_the_folder(zips, images, tmp_path):
    root = extract(zips, tmp_path, "detectron2")
    document = json.loads((root / "annotations" / "instances_val2017.json").read_text())
    document["images"][0]["file_name"] = "../../secret.jpg"
    (root / "annotations" / "instances_val2017.json").write_text(json.dumps(document))
    (root / "annotations" / "panoptic_val2017.json").unlink()
    ds = COCO(root)
    with pytest.raises(DatasetError, match="'val2017/../../secret.jpg' is not a relative path inside the dataset"):
        ds.read_image(ds.keys.index("../../secret.jpg"))


def digest(ds: COCO, index: int) -> str:
    sample = ds.sample(index)
    rle = [mask_utils.area(mask_utils.frPyObjects(a["segmentation"], *sample.segment_map.shape))
           for a in sample.instances if isinstance(a["segmentation"], dict)]
    return hashlib.sha1(sample.segment_map.tobytes() + sample.image.tobytes() + str(rle).encode()).hexdigest()


def test_picklable_and_safe_across_fork(zips):
    ds = COCO(zips)
    expected = [digest(ds, i) for i in range(len(ds))]  # the parent's zip handles are open now
    assert [digest(pickle.loads(pickle.dumps(ds)), i) for i in range(len(ds))] == expected
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(functools.partial(digest, ds), list(range(len(ds))) * 2) == expected * 2
