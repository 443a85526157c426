"""Dataset readers: ADE20K panoptic (ade20k.py, from the zips or extracted folders), a plain image folder
(image_folder.py), and a writer of small ADE20K-format zips (ade20k_writer.py)."""
