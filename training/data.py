"""Training samples from an ADE20K-format split: the image resized and padded as the predictor does it
(longest side = img_size, zeros right and below), with optional scale jitter and horizontal flips, and one
boolean mask + class id per ground-truth segment.

Augmentation is drawn from a seed that the batch sampler hands in with each index, so the data of a run is the
same whatever the number of DataLoader workers, and a resumed run sees exactly the batches it would have seen.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

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
