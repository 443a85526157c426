"""Predictions for photos: pre-processing, the forward pass on the model's device (optionally under bf16/fp16
autocast) and post-processing, for one image or a list of them."""

from __future__ import annotations

import numpy as np
import torch

from eomt.devices import autocast, precision_name
from eomt.images import to_rgb_array
from eomt.modeling import EoMT
from eomt.postprocess import (
    PanopticResult,
    instance_segmentation,
    panoptic_segmentation,
    semantic_segmentation,
)
from eomt.transforms import resize_and_pad, sliding_windows


class Predictor:
    """Runs `model` (an eomt.EoMT, or an eomt.onnx.OnnxModel) on images: PIL images or HxW(x3) arrays (see
    transforms.to_rgb_array).

    stuff_classes: class ids merged into one segment per class in panoptic output (default: the config's).
    dtype: None/fp32 computes in float32; bf16 or fp16 runs the network under autocast.
    """

    def __init__(self, model: EoMT, stuff_classes=None, score_threshold: float = 0.8,
                 overlap_threshold: float = 0.8, mask_threshold: float = 0.5, dtype=None):
        self.model = model.eval()
        self.config = model.config
        self.img_size = model.config.img_size
        # An ONNX Runtime model (eomt.onnx.OnnxModel) has no parameters: it tells its device and computes in fp32.
        is_module = isinstance(model, torch.nn.Module)
        self.device = next(model.parameters()).device if is_module else model.device
        self.precision = precision_name(dtype)
        if self.precision != "fp32" and not is_module:
            raise ValueError(f"dtype {dtype}: {model} computes in float32 (autocast applies to PyTorch models)")
        self.stuff_classes = frozenset(model.config.stuff_classes if stuff_classes is None else stuff_classes)
        self.score_threshold = score_threshold
        self.overlap_threshold = overlap_threshold
        self.mask_threshold = mask_threshold

    @torch.inference_mode()
    def forward(self, batch: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3, S, S) uint8 -> float32 (mask_logits, class_logits) on the model's device."""
        images = batch.to(self.device, non_blocking=True).float().div_(255)
        with autocast(self.device, self.precision):
            mask_logits, class_logits = self.model(images)
        return mask_logits.float(), class_logits.float()

    def _padded_batch(self, images) -> tuple[torch.Tensor, list, list]:
        pixels, resized_sizes, original_sizes = [], [], []
        for image in images:
            rgb = to_rgb_array(image)
            padded, resized = resize_and_pad(rgb, self.img_size)
            pixels.append(padded)
            resized_sizes.append(resized)
            original_sizes.append(rgb.shape[:2])
        return torch.stack(pixels), resized_sizes, original_sizes

    # ------------------------------------------------------------------------------------------ panoptic

    def panoptic(self, image) -> PanopticResult:
        return self.panoptic_batch([image])[0]

    def panoptic_batch(self, images) -> list[PanopticResult]:
        if not images:
            return []
        batch, resized_sizes, original_sizes = self._padded_batch(images)
        return self.panoptic_from_logits(*self.forward(batch), resized_sizes, original_sizes)

    @torch.inference_mode()
    def panoptic_from_logits(self, mask_logits, class_logits, resized_sizes, original_sizes) -> list[PanopticResult]:
        """Post-processing of a padded batch's logits, given each image's resized and original (H, W)."""
        return [panoptic_segmentation(mask_logits[i], class_logits[i], self.img_size, resized_sizes[i],
                                      original_sizes[i], self.stuff_classes, self.score_threshold,
                                      self.overlap_threshold, self.mask_threshold)
                for i in range(len(original_sizes))]

    # ------------------------------------------------------------------------------------------ instance

    def instance(self, image) -> list[dict]:
        """The top 100 instances: [{"mask": (H, W) bool, "category_id", "score"}], best first."""
        return self.instance_batch([image])[0]

    def instance_batch(self, images) -> list[list[dict]]:
        if not images:
            return []
        batch, resized_sizes, original_sizes = self._padded_batch(images)
        return self.instance_from_logits(*self.forward(batch), resized_sizes, original_sizes)

    @torch.inference_mode()
    def instance_from_logits(self, mask_logits, class_logits, resized_sizes, original_sizes) -> list[list[dict]]:
        return [instance_segmentation(mask_logits[i], class_logits[i], self.img_size, resized_sizes[i],
                                      original_sizes[i])
                for i in range(len(original_sizes))]

    # ------------------------------------------------------------------------------------------ semantic

    def semantic(self, image) -> np.ndarray:
        """(H, W) int32 class map from overlapping windows over the image resized to shortest side S."""
        return self.semantic_batch([image])[0]

    def semantic_batch(self, images) -> list[np.ndarray]:
        if not images:
            return []
        windows, starts, resized_sizes, original_sizes = [], [], [], []
        for image in images:
            rgb = to_rgb_array(image)
            image_windows, image_starts, resized = sliding_windows(rgb, self.img_size)
            windows.append(image_windows)
            starts.append(image_starts)
            resized_sizes.append(resized)
            original_sizes.append(rgb.shape[:2])
        mask_logits, class_logits = self.forward(torch.cat(windows))
        results, first = [], 0
        with torch.inference_mode():
            for image_starts, resized, original in zip(starts, resized_sizes, original_sizes, strict=True):
                last = first + len(image_starts)
                results.append(semantic_segmentation(mask_logits[first:last], class_logits[first:last],
                                                     self.img_size, image_starts, resized, original))
                first = last
        return results
