"""Exact panoptic and semantic metrics and the COCO panoptic format, in numpy (no torch, no gradio).

    pq              panoptic quality as panopticapi computes it, per image, per class and over a dataset
    coco_panoptic   id <-> RGB, PNG + JSON reading and writing, panopticapi's pq_compute on files
    pq_hotcoco      dataset-level PQ counts by hotcoco (Rust), bit for bit pq's, when it is installed
    instance_counts instances per class in one image
    semantic        mIoU from a confusion matrix
    output_folder, aggregates, atomic, render: the batch dump's output folder (see those modules)
    python -m metrics GT_JSON PRED_JSON [--gt-folder DIR] [--pred-folder DIR] [--per-image] [--workers N]
"""
