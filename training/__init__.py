"""EoMT training: Hungarian matching (matcher.py), the set loss over all block predictions (losses.py),
layer-wise lr decay, warmup + poly and mask annealing (schedule.py), samples (data.py), the run (loop.py);
`python -m training` is the command line."""
