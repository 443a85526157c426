"""The embedded demo: three small EoMT models trained on toy ADE20K-format scenes (segdata.scenes) and shipped in
assets/ (two panoptic, one semantic), and the comparison folder they make on the toy validation split, built on
first use, offline: panoptic against panoptic, and the semantic model against the panoptic models' class maps.

    from dump.demo import default_demo_folder
    folder = default_demo_folder()   # ~/.cache/eomt-compare/demo-<hash>, built by the dump on first use

`python predict_dump.py --demo --out DIR` builds the same folder in DIR (build_demo_folder). The commands that
trained the models are in the README ("The demo models").
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from dump.folder import INSTANCE_COUNTS, MANIFEST, TASKS, VERSION
from dump.model_specs import ModelSpec
from dump.run import DumpOptions, dump
from segdata import scenes

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# name in the comparison -> checkpoint; the first is the stronger model.
DEMO_MODELS = {
    "toy-base": ASSETS / "demo_base.safetensors",
    "toy-small": ASSETS / "demo_small.safetensors",
}
DEMO_IMAGES = 60  # the toy validation split; the dump of both models takes well under a minute on 2 CPU cores
DEMO_SEED = 0
DATA_FOLDER = "demo_data"  # inside the output folder: the validation zips the dump reads
# Panoptic quality (panopticapi's definition) of each model on the toy validation split (DEMO_IMAGES scenes), as
# measured when the checkpoints were shipped (CPU, fp32); tests/test_demo.py checks the shipped files against it.
STATED_PQ = {"toy-base": 0.7322, "toy-small": 0.5412}
# The semantic demo model (task "semantic", sliding-window inference) and its mIoU on the same split (summed pixel
# counts, metrics.semantic), measured like STATED_PQ and checked by tests/test_demo.py.
DEMO_SEMANTIC = {"toy-semantic": ASSETS / "demo_semantic.safetensors"}
STATED_MIOU = {"toy-semantic": 0.7873}
CACHE_ENV = "EOMT_COMPARE_CACHE"


def folder_models() -> dict[str, Path]:
    """The models of the demo folder, in its order: the panoptic ones, then the semantic one."""
    return {**DEMO_MODELS, **DEMO_SEMANTIC}


def build_demo_data(folder: str | os.PathLike, num_images: int = DEMO_IMAGES) -> Path:
    """Writes the toy validation split (ADEChallengeData2016.zip + annotations_instance.zip) into `folder`."""
    return scenes.write_scenes(folder, num_train=0, num_val=num_images, seed=DEMO_SEED)


def build_demo_folder(out: str | os.PathLike, num_images: int = DEMO_IMAGES, overwrite: bool = False,
                      device: str = "cpu") -> Path:
    """Runs the dump with every demo model (folder_models()) over the toy validation split into `out`.

    The split is written to out/demo_data/ first (the manifest names it as the dataset). Like any dump, an
    interrupted build resumes. Raises RuntimeError when the dump does not finish every image.
    """
    out = Path(out)
    missing = [str(path) for path in folder_models().values() if not path.is_file()]
    if missing:
        raise FileNotFoundError(f"demo checkpoints missing: {', '.join(missing)}")
    data = out / DATA_FOLDER
    if overwrite or not _data_complete(data, num_images):
        build_demo_data(data, num_images)
    models = tuple(ModelSpec(name, str(path)) for name, path in folder_models().items())
    try:
        status = dump(DumpOptions(out=out, data=data, models=models, device=device, workers=0, overwrite=overwrite))
    except ValueError as e:  # refused (a folder written for other data, a model that does not load)
        raise RuntimeError(f"building the demo folder {out} was refused: {e}") from None
    if status != 0:
        raise RuntimeError(f"building the demo folder {out} failed (dump exit status {status})")
    return out


def _data_complete(data: Path, num_images: int) -> bool:
    from segdata.ade20k import ADE20K, DatasetError

    try:
        return len(ADE20K(data, "validation")) == num_images
    except (DatasetError, OSError):
        return False


def cache_root() -> Path:
    """$EOMT_COMPARE_CACHE, else $XDG_CACHE_HOME/eomt-compare, else ~/.cache/eomt-compare."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache").expanduser() / "eomt-compare"


def demo_key() -> str:
    """A hash of what the demo folder is made of: every checkpoint, the scene generator, the split size and the
    folder's format version and tasks (a newer format builds the demo again, with what it adds)."""
    digest = hashlib.sha256()
    for name, path in folder_models().items():
        digest.update(name.encode() + b"\0" + path.read_bytes())
    digest.update(Path(scenes.__file__).read_bytes())
    digest.update(f"{DEMO_IMAGES} {DEMO_SEED} {VERSION} {' '.join(TASKS)}".encode())
    return digest.hexdigest()[:16]


def demo_complete(folder: Path) -> bool:
    """Whether `folder` holds a finished dump of every demo model over every image."""

    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    done = {m["name"]: m.get("images_done") for m in manifest.get("models", [])}
    n_images = len(manifest.get("images", []))
    return (n_images == DEMO_IMAGES and (folder / INSTANCE_COUNTS).exists()
            and all(done.get(name) == n_images for name in folder_models()))


def default_demo_folder() -> Path:
    """The demo comparison folder in the cache (cache_root()/demo-<hash>), built on first use."""
    folder = cache_root() / f"demo-{demo_key()}"
    if not demo_complete(folder):
        print(f"building the demo folder {folder} (once; about 15 seconds on 2 CPU cores)")
        build_demo_folder(folder, DEMO_IMAGES)
    return folder
