"""Pre-processing as the reference does it: images become 8-bit RGB, are resized with PIL's bilinear filter
(which antialiases when shrinking), then padded (panoptic, instance) or cut into windows (semantic).

Pure CPU and picklable, so DataLoader workers can run it; nothing here needs the model.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image

from eomt.images import to_rgb_array


def _resize(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    if (height, width) == rgb.shape[:2]:
        return rgb
    return np.array(Image.fromarray(rgb).resize((width, height), Image.BILINEAR))


def padded_size(height: int, width: int, size: int) -> tuple[int, int]:
    """The size an image is resized to before padding: the longest side becomes `size` (at least 1 pixel)."""
    factor = min(size / height, size / width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def resize_and_pad(image, size: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Panoptic/instance input: (3, size, size) uint8 with the resized image top-left and zeros right and
    below, and the resized (height, width)."""
    rgb = to_rgb_array(image)
    new_h, new_w = padded_size(*rgb.shape[:2], size)
    padded = torch.zeros(3, size, size, dtype=torch.uint8)
    padded[:, :new_h, :new_w] = torch.from_numpy(_resize(rgb, new_h, new_w)).permute(2, 0, 1)
    return padded, (new_h, new_w)


def window_size(height: int, width: int, size: int) -> tuple[int, int]:
    """The size an image is resized to before windowing: the shortest side becomes `size`."""
    factor = max(size / height, size / width)
    return max(1, round(height * factor)), max(1, round(width * factor))


def window_starts(length: int, size: int) -> list[int]:
    """Starts of the ceil(length/size) windows of `size` that cover `length`, overlapping evenly."""
    count = math.ceil(length / size)
    overlap = count * size - length
    step = size - (overlap / (count - 1) if count > 1 else 0)
    return [int(i * step) for i in range(count)]


def sliding_windows(image, size: int) -> tuple[torch.Tensor, list[int], tuple[int, int]]:
    """Semantic input: (n, 3, size, size) uint8 windows along the long side of the resized image, their
    start offsets along that side, and the resized (height, width)."""
    rgb = to_rgb_array(image)
    new_h, new_w = window_size(*rgb.shape[:2], size)
    resized = torch.from_numpy(_resize(rgb, new_h, new_w)).permute(2, 0, 1)
    tall = new_h > new_w
    starts = window_starts(max(new_h, new_w), size)
    windows = [resized[:, s:s + size, :] if tall else resized[:, :, s:s + size] for s in starts]
    return torch.stack(windows), starts, (new_h, new_w)
