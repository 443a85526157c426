"""The batch dump behind predict_dump.py: model specs, dataset opening, the per-image writers and the passes."""
