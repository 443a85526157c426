"""Images of any kind as 8-bit RGB: files, PIL images of every mode and arrays. Torch-free, so that dataset
readers use the same conversion as the predictor without importing torch."""

from __future__ import annotations

import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

# More pixels than this are refused before decoding: a 2 MB PNG can hold 12000 x 12000 pixels (a "decompression
# bomb"), and predicting at full resolution needs several bytes per pixel and query chunk. 40 MP covers 8K video
# frames and most cameras; callers may raise it.
MAX_PIXELS = 40_000_000
MAX_BYTES = 25 * 2**20  # an image file larger than this is refused before it is opened (uploads, the CLI)


def check_size(width: int, height: int, max_pixels: int | None, where: str) -> None:
    """ValueError naming `where` when width x height exceeds `max_pixels` (None: no limit)."""
    if max_pixels is not None and width * height > max_pixels:
        raise ValueError(f"{where}: {width}x{height} is {width * height / 1e6:.1f} megapixels, more than the "
                         f"limit of {max_pixels / 1e6:.1f}; downscale it first, or raise the limit")


def load_image(path: str | os.PathLike, max_pixels: int | None = MAX_PIXELS,
               max_bytes: int | None = MAX_BYTES) -> Image.Image:
    """Opens an image file, with a ValueError naming the file when it is missing, unreadable, longer than
    `max_bytes` or larger than `max_pixels` (checked from its header, before the pixels are decoded); None: no
    limit."""
    try:
        size = os.path.getsize(path)
        if max_bytes is not None and size > max_bytes:
            raise ValueError(f"{path}: {size / 2**20:.1f} MB, more than the limit of {max_bytes / 2**20:.1f} MB; "
                             "raise the limit to read it")
        with warnings.catch_warnings():  # the size is checked here, not by a warning on stderr
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        check_size(image.width, image.height, max_pixels, str(path))
        image.load()  # PIL closes a file it opened by name once the pixels are read
    except Image.DecompressionBombError:
        raise ValueError(f"{path}: more than {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} megapixels, which PIL refuses "
                         "to decode (a decompression bomb?)") from None
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
    elif isinstance(image, np.ndarray) or hasattr(image, "__array__"):  # numpy, or a CPU torch tensor
        array = np.asarray(image)
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


def to_rgb_image(image: Image.Image) -> Image.Image:
    """A PIL RGB image of any PIL image, converted by to_rgb_array's rules (16-bit scaled, not clipped)."""
    return image if image.mode == "RGB" else Image.fromarray(to_rgb_array(image))
