"""Datasets with one reader interface (sample.py): ADE20K (ade20k.py), COCO panoptic + instance (coco.py),
Cityscapes (cityscapes.py), all straight from the distributed zips or their extracted folders through sources.py;
a plain folder of photos (image_folder.py); `detect.open_dataset` picks the reader for `--data`. Writers: small
ADE20K-format zips (ade20k_writer.py; the COCO and Cityscapes ones live in synthetic/) and the toy scenes the demo
models are trained on (scenes.py, `python -m segdata.scenes`)."""
