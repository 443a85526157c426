"""Synthetic data for tests and benchmarks, built through the product's own writers: tiny random models
(models.py), small ADE20K-format zips (ade20k.py) and whole output folders (folders.py, `python -m
synthetic.folders OUT`)."""
