"""Exact segmentation metrics in numpy (no torch, no gradio): numbers only.

    pq              panoptic quality as panopticapi computes it, per image, per class and over a dataset
    coco_panoptic   id <-> RGB, COCO panoptic PNG + JSON reading, panopticapi's pq_compute on files
    instance_counts instances per class in one image
    semantic        mIoU from a confusion matrix
    python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image]

The rules are stated in docs/metrics.md.
"""
