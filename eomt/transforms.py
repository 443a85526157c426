"""Pre-processing as the reference does it: images become 8-bit RGB, are resized with PIL's bilinear filter
(which antialiases when shrinking), then padded (panoptic, instance) or cut into windows (semantic).

Pure CPU and picklable, so DataLoader workers can run it; nothing here needs the model.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError


def load_image(path: str | os.PathLike) -> Image.Image:
    """Opens an image file, with a ValueError naming the file when it is missing or unreadable."""
    try:
        image = Image.open(path)
        image.load()
    except (OSError, UnidentifiedImageError) as err:
        raise ValueError(f"{path}: cannot read image ({err})") from err
    return image


def to_rgb_array(image) -> np.ndarray:
    """HxWx3 uint8 RGB from a PIL image of any mode or an array (HxW, HxWx1/3/4; uint8, uint16, bool, or
    float in [0, 1]). 16-bit data is scaled to 8 bits, not clipped; alpha is dropped."""
    if isinstance(image, Image.Image):
        if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
            # Pillow opens 16-bit PNGs in these modes; convert("RGB") would clip them to 255.
            array = np.asarray(image).astype(np.int64)
            if array.min() < 0 or array.max() > 65535:
                raise ValueError(f"{image.mode} image with values outside 0..65535 cannot be scaled to 8 bits")
            array = array.astype(np.uint16)
        elif image.mode == "F":
            array = np.asarray(image)
        else:
            return np.array(image.convert("RGB"))  # a writable copy, as torch.from_numpy wants
    elif isinstance(image, np.ndarray | torch.Tensor):
        array = image.numpy() if isinstance(image, torch.Tensor) else image
    else:
        raise ValueError(f"expected a PIL image or an HxWx3 array, got {type(image).__name__}")

    if array.ndim == 3 and array.shape[2] in (1, 3, 4):
        array = array[..., :3] if array.shape[2] != 1 else array[..., 0]
    if array.ndim == 2:
        array = np.repeat(array[..., None], 3, axis=2)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an HxW or HxWxC image with C in 1, 3, 4; got shape {array.shape}")
    if array.shape[0] == 0 or array.shape[1] == 0:
        raise ValueError(f"empty image of shape {array.shape}")
    if array.dtype == np.uint8:
        return np.ascontiguousarray(array)
    if array.dtype == np.uint16:
        return ((array.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    if array.dtype == bool:
        return array.astype(np.uint8) * 255
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all() or array.min() < 0 or array.max() > 1:
            raise ValueError("float images must hold finite values in [0, 1]")
        return np.round(array * 255).astype(np.uint8)
    raise ValueError(f"unsupported image dtype {array.dtype} (use uint8, uint16, bool or float in [0, 1])")


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
