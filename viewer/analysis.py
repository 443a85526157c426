"""Why does model A beat model B: the error analysis of the folder (docs/metrics.md), as tables.

Dataset figures sum the rows of analysis_stats.csv and segment_stats.csv over the images (all, or the current
list), never per-image files: errors by type with the ΔPQ of fixing each type (metrics.errors.error_table) per model
and per class, and the images where fixing a type gains the most. For the image on screen, Boundary PQ and PQ by
size come from the stored rows, or from its PNGs in a folder without them (format version 1).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dump.folder import GT
from metrics import pq
from metrics.analysis import ANALYSIS_COLUMNS, AnalysisCounts, analyze_image
from metrics.errors import FIXES, FN_TYPES, FP_TYPES, error_table
from metrics.sizes import SIZE_BINS
from viewer.labelmaps import LabelMapError, load_label_map

SQ = "sq"  # the segmentation-quality "fix": every TP's IoU set to 1
# One colour per error type in the error maps and the charts (Okabe-Ito, so red/green is not the only cue).
TYPE_COLORS = {"class": (213, 94, 0), "merged": (204, 121, 167), "split": (86, 180, 233),
               "localization": (240, 228, 66), "missed": (0, 114, 178), "background": (230, 159, 0)}
FIX_CHOICES = (*FIXES, SQ)
FIX_LABELS = {**{fix: fix for fix in FIXES}, SQ: "segmentation quality (IoU → 1)"}
NOT_ADDITIVE = ("ΔPQ if fixed: PQ after fixing every error of that type alone, minus PQ. The ΔPQs do not add up: "
                "fixing two types at once is worth more or less than the sum.")


def no_analysis_note(folder) -> str:
    """What the page says when the folder's analysis is missing or partial ("" when it is complete)."""
    if folder.has_analysis:
        return ""
    return ("This folder's error analysis is missing or incomplete (written before format version 2?), so these "
            f"figures cover only the images it has. Add it with `{folder.reindex_command()}`.")


def _rows(table: pd.DataFrame, model: str, positions, n_images: int) -> pd.DataFrame:
    rows = table[table["model"] == model]
    if positions is not None:
        keep = np.zeros(n_images, dtype=bool)
        keep[np.asarray(positions, dtype=np.int64)] = True
        rows = rows[keep[rows["pos"].to_numpy()]]
    return rows


def summed_counts(folder, model: str, positions=None) -> dict[int, pq.CategoryCounts]:
    """PQ counts of `model` summed over the images (segment_stats.csv)."""
    sums = _rows(folder.stats, model, positions, folder.n_images).groupby("category_id")[
        ["tp", "fp", "fn", "iou_sum"]].sum()
    return {int(k): pq.CategoryCounts(int(r.tp), int(r.fp), int(r.fn), float(r.iou_sum)) for k, r in sums.iterrows()}


def summed_analysis(folder, model: str, positions=None) -> AnalysisCounts:
    """Analysis counts of `model` summed over the images (analysis_stats.csv)."""
    rows = _rows(folder.analysis, model, positions, folder.n_images)
    sums = rows.groupby("category_id")[list(ANALYSIS_COLUMNS)].sum()
    return AnalysisCounts.from_rows({int(k): row.to_dict() for k, row in sums.iterrows()})


def _table(folder, model: str, positions) -> dict:
    return error_table(summed_counts(folder, model, positions), summed_analysis(folder, model, positions).errors,
                       folder.classes.isthing)


def fn_column(kind: str) -> str:
    return f"FN {kind}"


def fp_column(kind: str) -> str:
    return f"FP {kind}"


def delta_column(fix: str) -> str:
    return "ΔPQ_SQ" if fix == SQ else f"ΔPQ {fix}"


# Which error type each column of the error tables is about (a click on a cell lists its images).
COLUMN_FIX = {**{fn_column(k): k for k in FN_TYPES}, **{fp_column(k): k for k in FP_TYPES},
              **{delta_column(f): f for f in FIX_CHOICES}}


def _error_row(entry: dict) -> dict:
    row = {"PQ": entry["pq"]}
    row.update({fn_column(k): entry["fn"][k] for k in FN_TYPES})
    row.update({fp_column(k): entry["fp"][k] for k in FP_TYPES})
    row.update({delta_column(f): entry["delta_pq"][f] for f in FIX_CHOICES})
    return row


def error_summary(folder, models: list[str], positions=None, group: str = "All") -> pd.DataFrame:
    """Per model: PQ, false negatives and false positives by type, and the ΔPQ of fixing each type (All, Things or
    Stuff), from counts summed over the images."""
    rows = [{"model": model, **_error_row(_table(folder, model, positions)[group])} for model in models]
    return pd.DataFrame(rows, columns=["model", "PQ", *COLUMN_FIX])


def class_errors(folder, models: list[str], positions=None, kind: str = "all") -> pd.DataFrame:
    """Per class and model (models side by side): PQ, errors by type and ΔPQ if fixed of that class; classes
    ordered by their errors over the models, most first. `kind` "thing"/"stuff" keeps one kind."""
    rows = []
    for model in models:
        for class_id, entry in _table(folder, model, positions)["per_class"].items():
            isthing = folder.classes.isthing.get(class_id)
            if kind in ("thing", "stuff") and bool(isthing) != (kind == "thing"):
                continue
            rows.append({"class id": class_id, "class": folder.classes.label(class_id),
                         "kind": "thing" if isthing else "stuff", "model": model, **_error_row(entry)})
    table = pd.DataFrame(rows, columns=["class id", "class", "kind", "model", "PQ", *COLUMN_FIX])
    errors = table[[c for c in COLUMN_FIX if c.startswith(("FN", "FP"))]].sum(axis=1)
    total = errors.groupby(table["class id"]).transform("sum")
    order = {m: k for k, m in enumerate(models)}
    table = table.assign(_total=total, _model=table["model"].map(order))
    return table.sort_values(["_total", "class id", "_model"], ascending=[False, True, True]).drop(
        columns=["_total", "_model"]).reset_index(drop=True)


# ------------------------------------------------------------------------------------------- images by a type

def _merged_rows(folder, model: str, positions) -> pd.DataFrame:
    """Per (image, class) of `model`: PQ counts beside the error counts (0 where the class has none)."""
    stats = _rows(folder.stats, model, positions, folder.n_images)[["pos", "category_id", "tp", "fp", "fn",
                                                                     "iou_sum"]]
    analysis = _rows(folder.analysis, model, positions, folder.n_images)
    errors = analysis[["pos", "category_id", *(c for c in ANALYSIS_COLUMNS if c.startswith(("fn_", "fp_"))),
                       "class_iou_sum"]]
    merged = stats.merge(errors, on=["pos", "category_id"], how="left").fillna(0)
    return merged[folder.covered[model][merged["pos"].to_numpy()]
                  & folder.analysis_covered[model][merged["pos"].to_numpy()]]


def _image_pq(pos: np.ndarray, tp, fp, fn, iou_sum) -> pd.Series:
    """Per image, the mean PQ over its active classes (NaN without one)."""
    denominator = pq.pq_denominator(tp, fp, fn)
    active = denominator > 0
    values = pd.DataFrame({"pos": pos[active], "pq": iou_sum[active] / denominator[active]})
    return values.groupby("pos")["pq"].mean()


def _fixed(rows: pd.DataFrame, fix: str, selected: np.ndarray):
    """tp, fp, fn, iou_sum per row with `fix` applied to the selected rows (metrics.errors.fixed's rule)."""
    tp, fp, fn = (rows[c].to_numpy(dtype=float) for c in ("tp", "fp", "fn"))
    iou_sum = rows["iou_sum"].to_numpy(dtype=float)
    if fix == SQ:
        return tp, fp, fn, np.where(selected, tp, iou_sum)
    fn_fixed = rows[f"fn_{fix}"].to_numpy(dtype=float) if fix in FN_TYPES else 0.0
    fp_fixed = rows[f"fp_{fix}"].to_numpy(dtype=float) if fix in FP_TYPES else 0.0
    fn, fp = fn - selected * fn_fixed, fp - selected * fp_fixed
    if fix == "class":
        tp = tp + selected * fn_fixed
        iou_sum = iou_sum + selected * rows["class_iou_sum"].to_numpy(dtype=float)
    return tp, fp, fn, iou_sum


def _errors_of(rows: pd.DataFrame, fix: str) -> np.ndarray:
    if fix == SQ:  # the IoU a perfect mask would add back
        return rows["tp"].to_numpy(dtype=float) - rows["iou_sum"].to_numpy(dtype=float)
    return sum((rows[f"{side}_{fix}"].to_numpy(dtype=float) for side, kinds in (("fn", FN_TYPES), ("fp", FP_TYPES))
                if fix in kinds), np.zeros(len(rows)))


def images_by_fix(folder, model: str, fix: str, class_id: int | None = None, positions=None,
                  top_n: int | None = 20) -> pd.DataFrame:
    """The images where fixing `fix` errors (of `class_id` only, when given) raises `model`'s per-image PQ the
    most: image, the errors of that type, PQ, PQ if fixed and the gain. Images without such an error are left
    out; ties keep image order."""
    if fix not in FIX_CHOICES:
        raise ValueError(f"unknown error type {fix!r}: one of {', '.join(FIX_CHOICES)}")
    rows = _merged_rows(folder, model, positions)
    pos = rows["pos"].to_numpy()
    selected = np.ones(len(rows), dtype=bool) if class_id is None else (rows["category_id"] == class_id).to_numpy()
    errors = pd.Series(_errors_of(rows, fix) * selected, index=rows.index).groupby(pos).sum()
    before = _image_pq(pos, *(rows[c].to_numpy(dtype=float) for c in ("tp", "fp", "fn", "iou_sum")))
    after = _image_pq(pos, *_fixed(rows, fix, selected))
    table = pd.DataFrame({"errors": errors, "PQ": before, "PQ if fixed": after.reindex(errors.index)})
    table = table[table["errors"] > 1e-12]
    table["ΔPQ if fixed"] = table["PQ if fixed"] - table["PQ"]
    table = table.sort_values(["ΔPQ if fixed", "errors"], ascending=False, kind="stable", na_position="last")
    if top_n:
        table = table.head(top_n)
    label = "all classes" if class_id is None else folder.classes.label(class_id)
    return pd.DataFrame({"image": [folder.images[p] for p in table.index], "model": model,
                         "error type": FIX_LABELS[fix], "class": label,
                         "errors" if fix != SQ else "IoU lost": table["errors"].to_numpy(),
                         "PQ": table["PQ"].to_numpy(), "PQ if fixed": table["PQ if fixed"].to_numpy(),
                         "ΔPQ if fixed": table["ΔPQ if fixed"].to_numpy()})


# -------------------------------------------------------------------------------------------- one image

def pair_analysis(folder, pos: int, model: str) -> tuple[AnalysisCounts | None, str]:
    """One pair's analysis counts and where they came from: analysis_stats.csv, or computed from the PNGs when
    the file lacks the pair; None and the reason when neither is possible."""
    stored = folder.stored_analysis(pos, model)
    if stored is not None:
        return stored, "analysis_stats.csv"
    if not (folder.has(GT, pos) and folder.has(model, pos)):
        return None, "no ground truth" if not folder.has(GT, pos) else "no prediction"
    try:
        gt, pred = load_label_map(folder, pos, GT), load_label_map(folder, pos, model)
        return analyze_image(gt.segment_map, list(gt.segments.values()), pred.segment_map,
                             list(pred.segments.values())).counts, "computed from the PNGs"
    except (LabelMapError, pq.PanopticFormatError) as e:
        return None, str(e)


ANALYSIS_METRICS = ("Boundary PQ", *(f"PQ {size}" for size in SIZE_BINS))


def analysis_metrics(counts: AnalysisCounts | None, isthing: dict[int, bool]) -> dict:
    """Boundary PQ and PQ per size bin of one image (means over the classes active in each, None when none is)."""
    if counts is None:
        return {}
    values = {"Boundary PQ": pq.pq_summary(counts.boundary, isthing)["All"]["pq"]}
    for size in SIZE_BINS:
        values[f"PQ {size}"] = pq.pq_summary(counts.sizes.get(size, {}), isthing)["All"]["pq"]
    return values


def boundary_pq(counts: AnalysisCounts | None, class_id: int) -> float | None:
    """Boundary PQ of one class in one image; None when it has no boundary count."""
    c = (counts.boundary if counts is not None else {}).get(class_id)
    return None if c is None or c.tp + c.fp + c.fn == 0 else pq.quality(c.tp, c.fp, c.fn, c.iou_sum)[0]
