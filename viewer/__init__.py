"""The model comparison app's logic as plain functions; `gradio_app.py` only lays out the page and wires events.

    index       open an output folder: what it holds, what is missing, per-image numbers for filters and tables
    task_stats  per-image numbers of the semantic and instance tasks (mIoU, TP/FP/FN, recall), the shared metric
    filters     class and content filters, signed ranking by a metric difference
    navigation  the per-session list of images and the position in it
    labelmaps   panoptic PNG + annotation -> segment and class maps (cached), panopticapi segment matching
    task_maps   semantic maps and instances of one image, their error maps and inspector rows
    panels      pictures of one image: labels, overlays, error maps, pair maps; their HTML; the pixel inspector
    tables      per-image metrics, pairwise differences, per-class counts; CSV export
    dataset     whole-dataset per-class metrics from summed counts (PQ, IoU, AP), class filters, confusion of
                unmatched segments, the semantic confusion matrix and the images of a confusion
    plots       seaborn charts of the dataset view
    live        run a checkpoint of the folder on an uploaded image (imports the model package only when used)
    events      what each event of the page does, as plain functions of the opened folder and the controls

Nothing here imports torch (until the live tab runs a model) or gradio.
"""
