"""The batch dump behind predict_dump.py and the output folder it writes.

    run         DumpOptions and dump(): one run of several models over a dataset, reindex()
    passes      the data pass and the per-model passes over the images (DataLoader workers, thread pool)
    writer      the files of one image: its data (input, ground truths) and one model's prediction on its task
    records     the per-image semantic and instance records: made from predictions, read back (no torch)
    aggregates  the derived files (COCO JSONs, segment_stats.csv, instance_counts.json) from panoptic/
    task_aggregates  the semantic and instance aggregates (stats, confusion, COCO instance files, task_metrics.json)
    folder      the output-folder contract: every file name, manifest and annotation I/O (no torch; the app reads it)
    model_specs NAME=SOURCE[@PRESET][@TASK] arguments, models files, --backbone-weights
    demo        the embedded demo: the shipped toy models over the toy validation split
"""
