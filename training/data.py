"""Training samples from a dataset split. Panoptic: the image resized and padded as the predictor does it
(longest side = img_size, zeros right and below), with optional scale jitter and horizontal flips, and one
boolean mask + class id per ground-truth segment. Semantic: the image resized so that its shortest side is
img_size (as the sliding-window inference sees it), with optional scale jitter, a random img_size crop and
flips, and one mask per class present plus the map of valid (not ignored) pixels. (The official EoMT augments
semantic data as panoptic data: longest side times a 0.5-2 jitter, padded, cropped; shortest-side crops give the
network, at scale 1, exactly the scale its sliding windows see.)

Augmentation is drawn from a seed that the batch sampler hands in with each index, so the data of a run is the
same whatever the number of DataLoader workers, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from segdata.sample import IGNORE
from training.losses import Targets


class PanopticSamples(Dataset):
    """dataset: anything whose items have .image (PIL RGB), .segment_map (H, W; 0 = void) and .segments
    ({"id", "category_id"}), e.g. segdata.ade20k.ADE20K. Items are indexed by (index, seed)."""

    def __init__(self, dataset, img_size: int, scale_range: tuple[float, float] = (1.0, 1.0), flip: bool = True):
        self.dataset, self.img_size = dataset, img_size
        self.scale_range, self.flip = scale_range, flip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> tuple[torch.Tensor, Targets]:
        index, seed = item
        rng = np.random.default_rng(list(seed))
        sample = self.dataset[index]
        image = sample.image
        size = self.img_size
        scale = rng.uniform(*self.scale_range) if self.scale_range != (1.0, 1.0) else 1.0
        factor = scale * size / max(image.width, image.height)
        new_w, new_h = max(1, round(image.width * factor)), max(1, round(image.height * factor))
        pixels = np.array(image.resize((new_w, new_h), Image.BILINEAR))
        segment_map = np.asarray(Image.fromarray(sample.segment_map.astype(np.int32)).resize((new_w, new_h),
                                                                                            Image.NEAREST))
        # Larger than the input after jitter: a random crop; smaller: top-left, padded with zeros (void).
        top = int(rng.integers(0, new_h - size + 1)) if new_h > size else 0
        left = int(rng.integers(0, new_w - size + 1)) if new_w > size else 0
        pixels, segment_map = pixels[top:top + size, left:left + size], segment_map[top:top + size, left:left + size]
        if self.flip and rng.random() < 0.5:
            pixels, segment_map = pixels[:, ::-1], segment_map[:, ::-1]
        padded = torch.zeros(3, size, size, dtype=torch.uint8)
        padded[:, :pixels.shape[0], :pixels.shape[1]] = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
        full_map = np.zeros((size, size), np.int32)
        full_map[:segment_map.shape[0], :segment_map.shape[1]] = segment_map

        ids = np.array([s["id"] for s in sample.segments], dtype=np.int64)
        labels = np.array([s["category_id"] for s in sample.segments], dtype=np.int64)
        masks = full_map[None] == ids[:, None, None] if len(ids) else np.zeros((0, size, size), bool)
        present = masks.any(axis=(1, 2))  # segments cropped away or too small to survive the resize
        return padded, Targets(torch.from_numpy(masks[present]), torch.from_numpy(labels[present]))


def semantic_targets(class_map: np.ndarray, num_classes: int, ignore: int = IGNORE) -> Targets:
    """Targets of a semantic map (H, W) of class ids with `ignore` where unlabeled: one mask per class present,
    in class order, and valid = not ignored. ValueError for a value that is neither a class nor `ignore`."""
    class_map = np.asarray(class_map)
    present = np.unique(class_map)
    present = present[present != ignore]
    if len(present) and (present.min() < 0 or present.max() >= num_classes):
        stray = present[(present < 0) | (present >= num_classes)]
        raise ValueError(f"semantic map values {stray.tolist()} are neither classes (0..{num_classes - 1}) nor "
                         f"the ignore label {ignore}")
    masks = class_map[None] == present[:, None, None]
    return Targets(torch.from_numpy(masks), torch.from_numpy(present.astype(np.int64)),
                   torch.from_numpy(class_map != ignore))


class SemanticSamples(Dataset):
    """dataset: a reader of segdata.sample's interface with "semantic" ground truth (read_image(i) and
    semantic(i), 255 = ignore). Items are indexed by (index, seed), as PanopticSamples.

    The shortest side becomes scale * img_size (scale uniform in scale_range), then a random img_size crop;
    a side that ends up shorter than img_size is padded with zeros (ignored pixels)."""

    def __init__(self, dataset, img_size: int, num_classes: int, scale_range: tuple[float, float] = (1.0, 1.0),
                 flip: bool = True):
        self.dataset, self.img_size, self.num_classes = dataset, img_size, num_classes
        self.scale_range, self.flip = scale_range, flip

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, item: tuple[int, tuple[int, ...]]) -> tuple[torch.Tensor, Targets]:
        index, seed = item
        rng = np.random.default_rng(list(seed))
        image, class_map = self.dataset.read_image(index), self.dataset.semantic(index)
        if class_map.shape != (image.height, image.width):
            raise ValueError(f"{self.dataset.keys[index]}: semantic map is {class_map.shape[1]}x{class_map.shape[0]}"
                             f", the image {image.width}x{image.height}")
        size = self.img_size
        scale = rng.uniform(*self.scale_range) if self.scale_range != (1.0, 1.0) else 1.0
        factor = scale * size / min(image.width, image.height)
        new_w, new_h = max(1, round(image.width * factor)), max(1, round(image.height * factor))
        pixels = np.array(image.resize((new_w, new_h), Image.BILINEAR))
        class_map = np.asarray(Image.fromarray(class_map).resize((new_w, new_h), Image.NEAREST))
        top = int(rng.integers(0, new_h - size + 1)) if new_h > size else 0
        left = int(rng.integers(0, new_w - size + 1)) if new_w > size else 0
        pixels, class_map = pixels[top:top + size, left:left + size], class_map[top:top + size, left:left + size]
        if self.flip and rng.random() < 0.5:
            pixels, class_map = pixels[:, ::-1], class_map[:, ::-1]
        padded = torch.zeros(3, size, size, dtype=torch.uint8)
        padded[:, :pixels.shape[0], :pixels.shape[1]] = torch.from_numpy(pixels.copy()).permute(2, 0, 1)
        full_map = np.full((size, size), IGNORE, np.uint8)
        full_map[:class_map.shape[0], :class_map.shape[1]] = class_map
        return padded, semantic_targets(full_map, self.num_classes)


def collate(items: list[tuple[torch.Tensor, Targets]]) -> tuple[torch.Tensor, list[Targets]]:
    return torch.stack([image for image, _ in items]), [targets for _, targets in items]


def epoch_batches(num_samples: int, batch_size: int, seed: int, epoch: int, rank: int = 0,
                  world_size: int = 1) -> list[list[tuple[int, tuple[int, int, int]]]]:
    """This process's share of one epoch: a seeded permutation cut into global batches of batch_size (the
    incomplete last one dropped), each split evenly over the processes; items are (index, augmentation seed)."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(num_samples, generator=generator).tolist()
    per_rank = batch_size // world_size
    batches = []
    for start in range(0, num_samples - batch_size + 1, batch_size):
        indices = order[start + rank * per_rank:start + (rank + 1) * per_rank]
        batches.append([(index, (seed, epoch, index)) for index in indices])
    return batches
