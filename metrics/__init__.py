"""Exact segmentation metrics in numpy (no torch, no gradio): numbers only.

    pq              panoptic quality as panopticapi computes it, per image, per class and over a dataset
    coco_panoptic   id <-> RGB, COCO panoptic PNG + JSON reading, panopticapi's pq_compute on files
    pq_hotcoco      dataset-level PQ counts by hotcoco (Rust), bit for bit pq's, when it is installed
    instance_counts instances per class in one image
    semantic        per-image class counts (I, U, gt and predicted pixels), mIoU, fwIoU, aAcc, mAcc, confusion matrix
    instance        COCO mask AP as pycocotools computes it, per-image TP/FP/FN, predictions into COCO results
    errors          error types of false negatives / positives and the ΔPQ of fixing each
    boundary        Boundary PQ: boundary IoU of matched pairs, boundary counts
    sizes           PQ counts by object size (small, medium, large)
    analysis        all of the three above for one image (what the dump stores) and their sums
    bootstrap       paired bootstrap intervals of ΔPQ between two models
    compare         python -m metrics compare: ΔPQ of two predictions with intervals

    python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image]
                      [--errors] [--boundary] [--sizes] [--workers N]
    python -m metrics compare GT_JSON A_JSON B_JSON [--gt-folder DIR] [--a-folder DIR] [--b-folder DIR]
    python -m metrics semantic GT_DIR PRED_DIR --num-classes N | --classes NAME [--per-image]
    python -m metrics instance GT_JSON RESULTS_JSON [--per-image]

The rules are stated in docs/metrics.md.
"""
