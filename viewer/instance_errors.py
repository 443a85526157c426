"""Why one model's instances beat another's: TIDE error types and calibration per model (computed by the dump with
hotcoco, read from task_metrics.json), and A against B in mask AP with a paired bootstrap interval (computed on
demand from the folder's COCO instance files, which only this needs)."""

from __future__ import annotations

from functools import lru_cache

import pandas as pd

from dump.folder import GT, FolderError, read_json_file
from metrics import instance
from metrics.instance import TIDE_ORACLES, TIDE_TYPES

TIDE_LABELS = {"Cls": "class", "Loc": "localisation", "Both": "class + localisation", "Dupe": "duplicate",
               "Bkg": "background", "Miss": "missed", "FP": "every FP", "FN": "every FN"}
ERROR_COLUMNS = {t: f"{TIDE_LABELS[t]} errors" for t in TIDE_TYPES}
DELTA_COLUMNS = {t: f"ΔAP {TIDE_LABELS[t]}" for t in (*TIDE_TYPES, *TIDE_ORACLES)}
TIDE_NOTE = (f"Whole dataset, from the dump (hotcoco's TIDE at IoU {instance.DIAGNOSTIC_IOU}: a detection's error "
             "type from its best overlap; ΔAP if every error of the type were fixed, not additive; ECE: the mean gap "
             "between score and being right).")


def instance_entry(folder, model: str) -> dict | None:
    """task_metrics.json's instance numbers of a model (None when it has none)."""
    return (folder.task_metrics.get(model) or {}).get("instance")


def tide_table(folder, models: list[str]) -> pd.DataFrame:
    """Per model with TIDE numbers: its task, AP@0.5, errors per type, ΔAP@0.5 if every error of the type were
    fixed (the two oracles last), ECE and MCE of its scores."""
    rows = []
    for model in models:
        entry = instance_entry(folder, model) or {}
        tide, calibration = entry.get("tide"), entry.get("calibration") or {}
        if tide:
            rows.append({"model": model, "task": folder.model_tasks[model], "AP@0.5": tide["ap"],
                         **{column: tide["counts"][t] for t, column in ERROR_COLUMNS.items()},
                         **{column: tide["delta_ap"][t] for t, column in DELTA_COLUMNS.items()},
                         "ECE": calibration.get("ece"), "MCE": calibration.get("mce")})
    return pd.DataFrame(rows, columns=["model", "task", "AP@0.5", *ERROR_COLUMNS.values(), *DELTA_COLUMNS.values(),
                                       "ECE", "MCE"])


def no_tide_note(folder, models: list[str]) -> str:
    """Which chosen models scored as instances lack the TIDE numbers (a folder dumped before them)."""
    lacking = [m for m in models if instance_entry(folder, m) and not instance_entry(folder, m).get("tide")]
    return (f"No TIDE numbers for {', '.join(lacking)}: the folder was written before them; the dump's --reindex "
            "adds them.") if lacking else ""


def _documents(folder, models: tuple[str, str]) -> tuple[dict, list[list[dict]]]:
    """The COCO instance ground truth and each model's results on its categories (a panoptic model's results of
    stuff classes are left out, as for its AP)."""
    layout = folder.layout
    gt = read_json_file(layout.coco_instance_json(GT))
    results = [read_json_file(layout.coco_instance_json(model)) for model in models]
    try:
        known = {c["id"] for c in gt["categories"]}
        return gt, [[r for r in found if r["category_id"] in known] for found in results]
    except (KeyError, TypeError) as e:
        raise FolderError(f"{layout.coco_instance_json(GT)} or a model's results: not COCO instance files ({e!r})") \
            from None


COMPARISON_NOTE = (f"{instance.COMPARE_RESAMPLES:,} paired resamples of the images (seed {instance.COMPARE_SEED}), "
                   "95% intervals")


@lru_cache(maxsize=8)
def compare_ap(folder, model_a: str, model_b: str) -> pd.DataFrame:
    """AP, AP50, AP75 of A and B on the folder's instance ground truth, A − B and its paired bootstrap 95%
    interval over the images, and whether the interval excludes 0. Kept for the folder's next sessions: it reads
    both models' COCO results and evaluates them. ValueError (FolderError) for unusable files."""
    gt, (results_a, results_b) = _documents(folder, (model_a, model_b))
    compared = instance.compare_ap(gt, results_a, results_b)
    return pd.DataFrame([{"metric": label, f"A: {model_a}": compared[key]["a"], f"B: {model_b}": compared[key]["b"],
                          "A − B": compared[key]["delta"], "95% low": compared[key]["low"],
                          "95% high": compared[key]["high"],
                          "significant": bool(compared[key]["low"] > 0 or compared[key]["high"] < 0)}
                         for key, label in instance.COMPARED_METRICS])
