"""Datasets: ADE20K panoptic read straight from its zips or extracted folders (ade20k.py), a writer of ADE20K-format
zips (ade20k_writer.py), plain folders of photos (image_folder.py), what `--data` points at (detect.py), and the
toy scenes the demo models are trained on (scenes.py, `python -m segdata.scenes`)."""
