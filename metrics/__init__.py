"""Exact panoptic and semantic metrics and the COCO panoptic format, in numpy (no torch, no gradio).

    pq              panoptic quality as panopticapi computes it, per image, per class and over a dataset
    coco_panoptic   id <-> RGB, PNG + JSON reading and writing, panopticapi's pq_compute on files
    instance_counts instances per class in one image
    semantic        per-image class counts (I, U, gt and predicted pixels), mIoU, fwIoU, aAcc, mAcc, confusion matrix
    instance        COCO mask AP as pycocotools computes it, per-image TP/FP/FN, predictions into COCO results
    output_folder, aggregates, atomic, render: the batch dump's output folder (see those modules)
    python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image]
    python -m metrics semantic GT_DIR PRED_DIR --num-classes N | --classes NAME [--per-image]
    python -m metrics instance GT_JSON RESULTS_JSON [--per-image]
"""
