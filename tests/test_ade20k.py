"""ADE20K reader on zips written by ade20k_writer, on both extracted layouts and on three real val images."""

from __future__ import annotations

import functools
import hashlib
import io
import multiprocessing
import pickle
import shutil
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from eomt.classes import ade20k_classes
from segdata.ade20k import ADE20K, IMAGES_ZIP, INSTANCES_ZIP, DatasetError
from segdata.ade20k_writer import write_ade20k_zips

SAMPLE = Path(__file__).resolve().parent / "data" / "ade20k_sample"
CLASSES = ade20k_classes()
BY_NAME = {c.name: c for c in CLASSES}
WALL, SKY, FLOOR = BY_NAME["wall"], BY_NAME["sky"], BY_NAME["floor"]
PERSON, BED, WINDOW = BY_NAME["person"], BY_NAME["bed"], BY_NAME["window"]
H, W = 48, 64


def construction_case():
    """A semantic map and an instance map with every rule of the ground-truth construction in them."""
    semantic = np.zeros((H, W), np.uint8)
    semantic[:16] = WALL.semantic_value
    semantic[:8, 40:] = SKY.semantic_value
    semantic[16:32] = FLOOR.semantic_value
    semantic[32:, :20] = PERSON.semantic_value  # partly without instance: those pixels are void
    semantic[32:, 40:] = WALL.semantic_value  # a second, disjoint wall region: still one wall segment
    instance = np.zeros((H, W, 3), np.uint8)
    instance[34:46, 2:16] = (PERSON.instance_red, 1, 0)
    instance[4:13, 10:21] = (PERSON.instance_red, 2, 0)  # a person painted over the wall
    instance[36:45, 22:37] = (BED.instance_red, 5, 0)  # an instance on unlabeled pixels
    instance[:8, 40:] = (WINDOW.instance_red, 3, 0)  # covers all the sky: no sky segment left
    instance[20, 0] = (BED.instance_red, 0, 0)  # R without an instance index is no instance
    return semantic, instance


def smooth_image(seed):
    ys, xs = np.mgrid[0:H, 0:W]
    return np.stack([xs * 4, ys * 5, (xs + ys + 20 * seed) % 256], axis=-1).astype(np.uint8)


def expected_panoptic(semantic, instance):
    """The panoptic ground truth as Mask2Former and EoMT build it, written the direct way: (category map, -1 = void; instance index map)."""
    category = np.full(semantic.shape, -1)
    index = np.zeros(semantic.shape, int)
    for c in CLASSES:
        if not c.isthing:
            category[semantic == c.semantic_value] = c.id
    if instance is not None:
        for g in range(1, 256):
            mask = instance[..., 1] == g
            if mask.any():
                (red,) = np.unique(instance[..., 0][mask])
                category[mask] = next(c.id for c in CLASSES if c.instance_red == red)
                index[mask] = g
    return category, index


def assert_construction(sample, instance):
    category, index = expected_panoptic(sample.semantic, instance)
    assert sample.segment_map.dtype == np.int32 and sample.segment_map.shape == sample.semantic.shape
    assert ((sample.segment_map == 0) == (category == -1)).all()
    expected_keys = set(zip(category[category >= 0].tolist(), index[category >= 0].tolist(), strict=True))
    keys = []
    for s in sample.segments:
        mask = sample.segment_map == s["id"]
        (c,), (g,) = np.unique(category[mask]), np.unique(index[mask])
        assert (mask == ((category == c) & (index == g))).all()
        ys, xs = np.nonzero(mask)
        assert s == {"id": s["id"], "category_id": c, "isthing": bool(g), "area": len(ys), "iscrowd": 0,
                     "bbox": [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]}
        keys.append((c, g))
    assert len(keys) == len(set(keys)) and set(keys) == expected_keys
    assert sorted(s["id"] for s in sample.segments) == list(range(1, len(keys) + 1))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    """Zips with: 1 the construction case, 2 a grayscale JPEG, 3 a CMYK JPEG without things, 4 a constant
    semantic map; listed out of order, plus one training image."""
    folder = tmp_path_factory.mktemp("ade")
    semantic, instance = construction_case()
    other = np.full((H, W), FLOOR.semantic_value, np.uint8)
    other[:10] = 0
    no_things = np.zeros((H, W, 3), np.uint8)
    gray = Image.fromarray(smooth_image(2)[..., 0])
    cmyk = Image.new("CMYK", (W, H), (0, 255, 255, 0))  # red
    write_ade20k_zips(folder, {
        "validation": [
            ("ADE_val_00000003", cmyk, other, no_things),
            ("ADE_val_00000001", smooth_image(1), semantic, instance),
            ("ADE_val_00000004", smooth_image(4), np.full((H, W), WALL.semantic_value, np.uint8), no_things),
            ("ADE_val_00000002", gray, other, no_things),
        ],
        "training": [("ADE_train_00000001", smooth_image(5), other, no_things)],
    })
    return folder


def test_zip_member_layout(dataset):
    images = zipfile.ZipFile(dataset / IMAGES_ZIP).namelist()
    assert "ADEChallengeData2016/images/validation/ADE_val_00000001.jpg" in images
    assert "ADEChallengeData2016/annotations/training/ADE_train_00000001.png" in images
    assert all(name.startswith("ADEChallengeData2016/") for name in images)
    instances = zipfile.ZipFile(dataset / INSTANCES_ZIP)
    assert "annotations_instance/validation/ADE_val_00000001.png" in instances.namelist()
    assert {info.compress_type for info in instances.infolist()} == {zipfile.ZIP_STORED}  # zip -r -0
    assert Image.open(io.BytesIO(instances.read("annotations_instance/validation/ADE_val_00000001.png"))).mode == "RGB"


def test_ground_truth_follows_the_construction_pixel_for_pixel(dataset):
    ds = ADE20K(dataset)
    assert ds.stems == [f"ADE_val_0000000{i}" for i in (1, 2, 3, 4)] and len(ds) == 4
    semantic, instance = construction_case()
    sample = ds[0]
    assert sample.stem == "ADE_val_00000001" and (sample.semantic == semantic).all()
    assert_construction(sample, instance)
    category_at = {s["id"]: s["category_id"] for s in sample.segments}
    at = lambda y, x: category_at.get(int(sample.segment_map[y, x]))  # noqa: E731
    assert at(8, 15) == PERSON.id and at(14, 15) == WALL.id  # the person over the wall, the wall around it
    assert at(33, 0) is None and at(40, 8) == PERSON.id  # person pixels without instance are void
    assert at(40, 30) == BED.id and at(40, 38) is None  # the bed on unlabeled pixels; unlabeled is void
    assert at(20, 0) == FLOOR.id  # R without G is no instance
    assert SKY.id not in category_at.values()  # completely painted over by the window
    walls = [s for s in sample.segments if s["category_id"] == WALL.id]
    assert len(walls) == 1 and walls[0]["bbox"] == [0, 0, W, H]
    image = np.asarray(sample.image)
    assert sample.image.mode == "RGB" and np.abs(image.astype(int) - smooth_image(1)).mean() < 3  # JPEG q95
    for i in (1, 2, 3):
        assert_construction(ds[i], None)


def test_grayscale_and_cmyk_jpegs_become_rgb(dataset):
    ds = ADE20K(dataset)
    gray = ds.read_image(1)
    assert gray.mode == "RGB" and gray.size == (W, H)
    channels = np.asarray(gray).astype(int)
    assert (channels[..., 0] == channels[..., 1]).all() and (channels[..., 1] == channels[..., 2]).all()
    assert np.abs(channels[..., 0] - smooth_image(2)[..., 0]).mean() < 3
    red = np.asarray(ds.read_image(2)).astype(int)
    assert ds.read_image(2).mode == "RGB" and (red[..., 0] > 240).all() and (red[..., 1:] < 15).all()
    # An all-zero instance PNG means no things.
    assert all(not s["isthing"] for i in (1, 2) for s in ds[i].segments)


def test_skip_constant_and_splits(dataset):
    assert ADE20K(dataset).is_constant(3) and not ADE20K(dataset).is_constant(0)
    assert ADE20K(dataset, skip_constant=True).stems == [f"ADE_val_0000000{i}" for i in (1, 2, 3)]
    training = ADE20K(dataset, split="training")
    assert training.stems == ["ADE_train_00000001"] and training.keys == ["ADE_train_00000001.jpg"]
    assert training[0].semantic.shape == (H, W)
    with pytest.raises(ValueError, match="split must be one of"):
        ADE20K(dataset, split="val")


def extract(zips: Path, root: Path, layout: str) -> Path:
    zipfile.ZipFile(zips / IMAGES_ZIP).extractall(root)
    instance_parent = root / "ADEChallengeData2016" if layout == "mask2former" else root
    zipfile.ZipFile(zips / INSTANCES_ZIP).extractall(instance_parent)
    return root


def assert_same_samples(a: ADE20K, b: ADE20K):
    assert a.stems == b.stems
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert x.stem == y.stem and x.segments == y.segments
        assert (x.segment_map == y.segment_map).all() and (x.semantic == y.semantic).all()
        assert (np.asarray(x.image) == np.asarray(y.image)).all()


@pytest.mark.parametrize("layout", ["eomt", "mask2former"])
def test_extracted_layouts_read_like_the_zips(dataset, tmp_path, layout):
    root = extract(dataset, tmp_path, layout)
    from_zip = ADE20K(dataset)
    assert from_zip.layout == "zip"
    extracted = ADE20K(root)
    assert extracted.layout == "extracted" and extracted.has_instances
    assert_same_samples(from_zip, extracted)
    if layout == "mask2former":  # the ADEChallengeData2016 folder itself works too
        assert_same_samples(from_zip, ADE20K(root / "ADEChallengeData2016"))


def real_samples():
    stems = sorted(p.stem for p in (SAMPLE / "images").glob("*.jpg"))
    assert stems == ["ADE_val_00000001", "ADE_val_00000002", "ADE_val_00000003"], f"reference data in {SAMPLE}"
    return stems


def assert_stuff_only_ground_truth(ds: ADE20K):
    sizes = {"ADE_val_00000001": (683, 512), "ADE_val_00000002": (500, 364), "ADE_val_00000003": (400, 300)}
    thing_values = [c.semantic_value for c in CLASSES if c.isthing]
    for i, stem in enumerate(real_samples()):
        sample = ds[i]
        semantic = np.asarray(Image.open(SAMPLE / "annotations" / f"{stem}.png"))
        assert sample.stem == stem and sample.image.size == sizes[stem] and sample.image.mode == "RGB"
        assert (sample.semantic == semantic).all()
        assert sample.segments and all(not s["isthing"] for s in sample.segments)
        assert ((sample.segment_map == 0) == ((semantic == 0) | np.isin(semantic, thing_values))).all()
        assert_construction(sample, None)


def test_real_images_through_a_generated_zip(tmp_path):
    samples = []
    for stem in real_samples():
        semantic = np.asarray(Image.open(SAMPLE / "annotations" / f"{stem}.png"))
        no_things = np.zeros((*semantic.shape, 3), np.uint8)  # the sample has no instance annotations
        samples.append((stem, Image.open(SAMPLE / "images" / f"{stem}.jpg"), semantic, no_things))
    write_ade20k_zips(tmp_path, {"validation": samples})
    ds = ADE20K(tmp_path)
    assert ds.has_instances
    assert_stuff_only_ground_truth(ds)


def test_real_images_extracted_without_instance_annotations(tmp_path):
    for kind, suffix in (("images", "jpg"), ("annotations", "png")):
        folder = tmp_path / "ADEChallengeData2016" / kind / "validation"
        folder.mkdir(parents=True)
        for stem in real_samples():
            shutil.copy(SAMPLE / kind / f"{stem}.{suffix}", folder)
    with pytest.warns(UserWarning, match="no annotations_instance.zip or annotations_instance/ found"):
        ds = ADE20K(tmp_path)
    assert not ds.has_instances
    assert_stuff_only_ground_truth(ds)
    for i, stem in enumerate(real_samples()):  # the real JPEG, decoded as is
        original = np.asarray(Image.open(SAMPLE / "images" / f"{stem}.jpg").convert("RGB"))
        assert (np.asarray(ds.read_image(i)) == original).all()


def test_a_folder_with_neither_layout(tmp_path):
    (tmp_path / "images").mkdir()
    with pytest.raises(DatasetError) as error:
        ADE20K(tmp_path)
    message = str(error.value)
    assert message.startswith(f"{tmp_path}: no ADE20K found")
    for looked_for in (tmp_path / IMAGES_ZIP, tmp_path / "ADEChallengeData2016", "images/", "annotations/"):
        assert str(looked_for) in message
    with pytest.raises(DatasetError, match="not a folder"):
        ADE20K(tmp_path / "missing")


def rewrite_zip(path: Path, changes: dict[str, bytes | None]):
    """Replaces (bytes) or removes (None) zip members."""
    with zipfile.ZipFile(path) as archive:
        members = [(info.filename, archive.read(info)) for info in archive.infolist()]
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members:
            if changes.get(name, data) is not None:
                archive.writestr(name, changes.get(name, data))


def broken_copy(dataset: Path, tmp_path: Path, zip_name: str, changes) -> ADE20K:
    for name in (IMAGES_ZIP, INSTANCES_ZIP):
        shutil.copy(dataset / name, tmp_path / name)
    rewrite_zip(tmp_path / zip_name, changes)
    return ADE20K(tmp_path)


def assert_others_readable(ds: ADE20K, broken: int):
    for i in range(len(ds)):
        if i != broken:
            assert ds[i].segment_map.shape == (H, W)


def test_missing_annotation_is_reported_and_the_rest_readable(dataset, tmp_path):
    member = "ADEChallengeData2016/annotations/validation/ADE_val_00000002.png"
    ds = broken_copy(dataset, tmp_path, IMAGES_ZIP, {member: None})
    assert len(ds) == 4  # the image is listed; reading its annotation fails
    with pytest.raises(DatasetError, match=f"^{tmp_path / IMAGES_ZIP}:{member}: missing$"):
        ds[1]
    assert ds.read_image(1).size == (W, H)
    assert_others_readable(ds, 1)
    assert ADE20K(tmp_path, skip_constant=True).stems[1] == "ADE_val_00000002"  # kept, so it is reported


def test_missing_instance_annotation_is_reported_and_the_rest_readable(dataset, tmp_path):
    # Without this the image's things would silently be void and its PQ would change.
    member = "annotations_instance/validation/ADE_val_00000001.png"
    ds = broken_copy(dataset, tmp_path, INSTANCES_ZIP, {member: None})
    for read in (ds.__getitem__, ds.panoptic):
        with pytest.raises(DatasetError, match=f"^{tmp_path / INSTANCES_ZIP}:{member}: missing "
                                               r"\(the instance annotation of ADE_val_00000001.jpg\)$"):
            read(0)
    assert ds.read_image(0).size == (W, H) and ds.semantic(0).shape == (H, W)
    assert_others_readable(ds, 0)


def test_corrupt_image_is_reported_and_the_rest_readable(dataset, tmp_path):
    member = "ADEChallengeData2016/images/validation/ADE_val_00000003.jpg"
    ds = broken_copy(dataset, tmp_path, IMAGES_ZIP, {member: b"\xff\xd8 not really a jpeg"})
    for read in (ds.read_image, ds.__getitem__):
        with pytest.raises(DatasetError, match=f"^{tmp_path / IMAGES_ZIP}:{member}: cannot decode image"):
            read(2)
    assert_others_readable(ds, 2)


def png_bytes(array) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.parametrize("zip_name, member, content, message", [
    (INSTANCES_ZIP, "annotations_instance/validation/ADE_val_00000001.png",
     np.dstack([np.tile([[4, 1]], (H, W // 2)), np.ones((H, W)), np.zeros((H, W))]).astype(np.uint8),
     r"instance 1 \(G channel\) has R values that are not one thing category \(R = \[1, 4\]\)"),
    (INSTANCES_ZIP, "annotations_instance/validation/ADE_val_00000001.png", np.zeros((H, W), np.uint8),
     "an instance annotation must be an RGB PNG, this one is mode L"),
    (INSTANCES_ZIP, "annotations_instance/validation/ADE_val_00000001.png", np.zeros((H, 5, 3), np.uint8),
     "annotation is 5x48, the image is 64x48"),
    (IMAGES_ZIP, "ADEChallengeData2016/annotations/validation/ADE_val_00000001.png",
     np.full((H, W), 200, np.uint8), r"values \[200\] are not ADE20K classes"),
])
def test_unusable_annotations_name_the_member(dataset, tmp_path, zip_name, member, content, message):
    ds = broken_copy(dataset, tmp_path, zip_name, {member: png_bytes(content)})
    with pytest.raises(DatasetError, match=f"^{tmp_path / zip_name}:{member}: {message}"):
        ds[0]
    assert_others_readable(ds, 0)


def digest(ds: ADE20K, index: int) -> str:
    sample = ds[index]
    return hashlib.sha1(sample.segment_map.tobytes() + sample.image.tobytes()).hexdigest()


_FORKED: ADE20K | None = None


def digest_inherited(index: int) -> str:
    return digest(_FORKED, index)


def test_picklable_and_safe_across_fork(dataset):
    global _FORKED
    ds = ADE20K(dataset)
    expected = [digest(ds, i) for i in range(len(ds))]  # the parent's zip handles are open now
    copy = pickle.loads(pickle.dumps(ds))
    assert [digest(copy, i) for i in range(len(copy))] == expected
    if "fork" not in multiprocessing.get_all_start_methods():
        pytest.skip("no fork on this platform")
    _FORKED = ds
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads in the parent (torch)
        with multiprocessing.get_context("fork").Pool(2) as pool:
            assert pool.map(digest_inherited, list(range(len(ds))) * 3) == expected * 3
            assert pool.map(functools.partial(digest, ds), range(len(ds))) == expected
