"""Seaborn charts of the dataset view. Figures are built without pyplot, so no global figure registry grows and
concurrent sessions do not draw into each other's axes."""

from __future__ import annotations

from dataclasses import dataclass

import matplotlib

matplotlib.use("Agg")  # the server has no display; must precede any pyplot import by seaborn

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from metrics.errors import FN_TYPES, FP_TYPES  # noqa: E402
from viewer.analysis import FIX_CHOICES, TYPE_COLORS, delta_column, fn_column, fp_column  # noqa: E402

GOOD, BAD, GREY = "#009E73", "#D55E00", "#BBBBBB"


def _figure(rows: int, per_row: float = 0.22, extra: float = 1.2, width: float = 9.0) -> Figure:
    return Figure(figsize=(width, max(2.5, rows * per_row + extra)), layout="constrained")


def _empty(message: str) -> Figure:
    figure = Figure(figsize=(9, 1.5))
    figure.text(0.5, 0.5, message, ha="center", va="center")
    return figure


def class_metric_chart(compare: pd.DataFrame, models: list[str], metric: str, colors: dict[str, str] | None = None,
                       max_classes: int = 40) -> Figure:
    """Horizontal bars of `metric` per class and model, for the first `max_classes` rows of a compare_classes
    table (its order: by A - B when a pair is chosen)."""
    shown = compare.head(max_classes)
    present = [m for m in models if m in shown]
    if shown.empty or not present:
        return _empty("no class passes the filters")
    long = shown.melt(id_vars=["class"], value_vars=present, var_name="model", value_name=metric)
    figure = _figure(len(shown) * max(1.0, len(present) / 2.5))
    ax = figure.add_subplot()
    sns.barplot(data=long, y="class", x=metric, hue="model", hue_order=present, orient="h", ax=ax,
                palette=colors, order=shown["class"].tolist())
    ax.set_xlim(0, 1)
    ax.set_ylabel("")
    ax.set_xlabel(f"{metric} over the images (from summed counts)")
    more = f" (first {len(shown)} of {len(compare)})" if len(compare) > len(shown) else ""
    ax.set_title(f"Per-class {metric}{more}")
    ax.legend(loc="lower right", fontsize="small")
    return figure


def delta_chart(compare: pd.DataFrame, delta_column: str | None, max_classes: int = 40) -> Figure:
    """Per-class A - B sorted from A's largest lead to B's, green where A is better, red where B is; with bootstrap
    intervals (dataset.with_intervals), each bar carries its 95% interval and differences whose interval contains
    0 are grey."""
    if not delta_column or delta_column not in compare:
        return _empty("choose two different models A and B to see the per-class difference")
    values = compare.dropna(subset=[delta_column])
    if len(values) > max_classes:  # keep both ends: where A leads most and where B leads most
        half = max_classes // 2
        values = pd.concat([values.head(half), values.tail(max_classes - half)])
    if values.empty:
        return _empty("no class where both models are active")
    delta = values[delta_column].to_numpy(dtype=float)
    significant = values["significant"].to_numpy(dtype=bool) if "significant" in values else np.ones(len(values), bool)
    colors = np.where(~significant, GREY, np.where(delta >= 0, GOOD, BAD))
    figure = _figure(len(values))
    ax = figure.add_subplot()
    rows = np.arange(len(values))
    ax.barh(rows, delta, color=colors)
    if "ΔPQ 95% low" in values:
        low, high = values["ΔPQ 95% low"].to_numpy(dtype=float), values["ΔPQ 95% high"].to_numpy(dtype=float)
        ok = ~(np.isnan(low) | np.isnan(high))
        ax.errorbar(delta[ok], rows[ok], xerr=[delta[ok] - low[ok], high[ok] - delta[ok]], fmt="none", ecolor="black",
                    elinewidth=0.8, capsize=2)
    ax.set_yticks(rows, values["class"].tolist())
    ax.invert_yaxis()
    ax.axvline(0, color="black", linewidth=0.8)
    more = f" ({len(values)} of {len(compare)} classes: both ends)" if len(compare) > len(values) else ""
    note = "; grey: 95% interval contains 0" if "significant" in values else ""
    ax.set_title(f"{delta_column}, sorted{more}{note}")
    return figure


SUMMARY_BARS = {"PQ": "PQ", "PQ things": "PQ things", "PQ stuff": "PQ stuff", "mIoU": "mIoU", "AP": "mask AP"}


def summary_chart(summary: pd.DataFrame, colors: dict[str, str] | None = None) -> Figure:
    """PQ over all, thing and stuff classes per model, and (where the models have them) mIoU and mask AP."""
    shown = [c for c in SUMMARY_BARS if c in summary and summary[c].notna().any()]
    if summary.empty or not shown:
        return _empty("no metrics: no model has counts in the folder's tables")
    long = summary.melt(id_vars=["model"], value_vars=shown, var_name="metric", value_name="value")
    long["metric"] = long["metric"].map(SUMMARY_BARS)
    figure = Figure(figsize=(9, 2.8), layout="constrained")
    ax = figure.add_subplot()
    sns.barplot(data=long, x="metric", y="value", hue="model", palette=colors, ax=ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_ylabel("")
    ax.set_title("PQ over all, thing and stuff classes; mIoU and mask AP (a panoptic model's from its class map and "
                 "thing segments)", fontsize="small")
    ax.legend(loc="upper right", fontsize="small")
    return figure


@dataclass(frozen=True)
class HeatmapGrid:
    """Where a rendered heatmap's cells are: the class ids of its rows and columns and the box of the cell area
    in the picture's pixels (left, top, right, bottom), so that a click on the picture names a cell."""

    rows: tuple[int, ...]
    columns: tuple[int, ...]
    box: tuple[float, float, float, float]

    def cell(self, x: float, y: float) -> tuple[int, int] | None:
        """(row class, column class) under picture pixel (x, y); None outside the cells."""
        left, top, right, bottom = self.box
        if not (left <= x < right and top <= y < bottom):
            return None
        row = int((y - top) / (bottom - top) * len(self.rows))
        column = int((x - left) / (right - left) * len(self.columns))
        return self.rows[min(row, len(self.rows) - 1)], self.columns[min(column, len(self.columns) - 1)]


def confusion_heatmap(matrix: np.ndarray, labels: dict[int, str], title: str,
                      max_classes: int = 20) -> tuple[np.ndarray, HeatmapGrid | None]:
    """The confusion matrix of the `max_classes` classes with the most ground-truth pixels, each row as shares of
    its class's pixels (the last column, id C: predicted as no class), annotated where a share is visible; drawn
    as an (H, W, 3) picture, with its grid (None when there is nothing to show)."""
    gt_pixels = matrix.sum(axis=1)
    if not gt_pixels.any():
        return _drawn(_empty("no semantic counts for this model"))[0], None
    classes = [int(c) for c in np.argsort(-gt_pixels, kind="stable")[:max_classes] if gt_pixels[c] > 0]
    columns = [*classes, matrix.shape[1] - 1]
    shares = matrix[np.ix_(classes, columns)] / gt_pixels[classes, None]
    figure = Figure(figsize=(11, max(4.0, 0.42 * len(classes) + 2)), layout="constrained")
    ax = figure.add_subplot()
    names = [labels.get(c, str(c)) for c in classes]
    sns.heatmap(shares, ax=ax, cmap="rocket_r", vmin=0, vmax=1, annot=len(classes) <= 25, fmt=".2f",
                annot_kws={"fontsize": 6}, xticklabels=[*names, "no class"], yticklabels=names,
                cbar_kws={"label": "share of the ground-truth class's pixels"})
    ax.set_xlabel("predicted class")
    ax.set_ylabel("ground-truth class")
    ax.set_title(title, fontsize="small")
    picture, box = _drawn(figure)
    return picture, HeatmapGrid(tuple(classes), tuple(columns), box)


def _drawn(figure: Figure) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """The figure as an (H, W, 3) uint8 picture at its own dpi, and the box of its first axes in that picture's
    pixels (left, top, right, bottom; matplotlib counts y from the bottom, pictures from the top; all 0 without
    axes)."""
    canvas = FigureCanvasAgg(figure)
    canvas.draw()  # lays the figure out: the axes' box is final only now
    picture = np.asarray(canvas.buffer_rgba())[..., :3].copy()
    if not figure.axes:
        return picture, (0.0, 0.0, 0.0, 0.0)
    extent, height = figure.axes[0].get_window_extent(), picture.shape[0]
    return picture, (extent.x0, height - extent.y1, extent.x1, height - extent.y0)


def _hex(rgb: tuple[int, int, int]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def _stacked_counts(ax, labels: list[str], table: pd.DataFrame) -> None:
    """Horizontal stacked bars of errors by type, false negatives plain and false positives hatched."""
    left = np.zeros(len(table))
    for side, kinds, column, hatch in (("FN", FN_TYPES, fn_column, ""), ("FP", FP_TYPES, fp_column, "//")):
        for kind in kinds:
            values = table[column(kind)].to_numpy(dtype=float)
            ax.barh(np.arange(len(table)), values, left=left, color=_hex(TYPE_COLORS[kind]), hatch=hatch,
                    edgecolor="white", linewidth=0.5, label=f"{side} {kind}")
            left += values
    ax.set_yticks(np.arange(len(table)), labels)
    ax.invert_yaxis()


def error_chart(summary: pd.DataFrame) -> Figure:
    """Per model: errors stacked by type (counts), and the ΔPQ of fixing each type (bars side by side: ΔPQs do
    not add up)."""
    if summary.empty:
        return _empty("no error analysis for these models")
    figure = _figure(len(summary) * 2, per_row=0.35, extra=1.8, width=12)
    counts_ax, delta_ax = figure.subplots(1, 2)
    _stacked_counts(counts_ax, summary["model"].tolist(), summary)
    counts_ax.set_title("Errors by type (FN plain, FP hatched)")
    figure.legend(*counts_ax.get_legend_handles_labels(), fontsize="x-small", ncols=5, loc="outside lower center")
    long = summary.melt(id_vars=["model"], value_vars=[delta_column(f) for f in FIX_CHOICES], var_name="fix",
                        value_name="ΔPQ if fixed")
    sns.barplot(data=long, y="fix", x="ΔPQ if fixed", hue="model", orient="h", ax=delta_ax)
    delta_ax.set_ylabel("")
    delta_ax.set_title("ΔPQ if every error of the type were fixed (not additive)")
    delta_ax.legend(fontsize="small", loc="lower right")
    return figure


def tide_chart(table: pd.DataFrame) -> Figure:
    """Per model, the ΔAP@0.5 of fixing each TIDE error type (and the two oracles), bars side by side."""
    deltas = [c for c in table.columns if c.startswith("ΔAP ")]
    if table.empty:
        return _empty("no TIDE numbers for these models (models scored as instances, dumped with hotcoco)")
    long = table.melt(id_vars=["model"], value_vars=deltas, var_name="fix", value_name="ΔAP@0.5 if fixed")
    long["fix"] = long["fix"].str.removeprefix("ΔAP ")
    figure = _figure(len(deltas) * len(table), per_row=0.16, extra=1.6, width=9)
    ax = figure.add_subplot()
    sns.barplot(data=long, y="fix", x="ΔAP@0.5 if fixed", hue="model", orient="h", ax=ax)
    ax.set_ylabel("")
    ax.set_title("ΔAP@0.5 if every error of the type were fixed (TIDE; not additive)")
    ax.legend(fontsize="small", loc="lower right")
    return figure


def class_error_chart(table: pd.DataFrame, max_classes: int = 15) -> Figure:
    """Per class (the most errors first) and model, the errors stacked by type; models side by side."""
    if table.empty:
        return _empty("no class with errors for these models")
    classes = table["class id"].drop_duplicates().head(max_classes)
    shown = table[table["class id"].isin(classes)]
    figure = _figure(len(shown), per_row=0.3, width=10)
    ax = figure.add_subplot()
    _stacked_counts(ax, [f"{c} · {m}" for c, m in zip(shown["class"], shown["model"], strict=True)], shown)
    ax.set_title(f"Errors by type per class and model (the {len(classes)} classes with the most errors)")
    ax.legend(fontsize="x-small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def sweep_chart(sweep: dict, models: list[str], metric: str = "pq", group: str = "All",
                colors: dict[str, str] | None = None) -> Figure:
    """PQ (or SQ, RQ) against the score threshold per model, one line per overlap threshold; the default setting
    is a black star, and each model's best setting is named in the legend."""
    shown = [m for m in models if m in sweep]
    if not shown:
        return _empty("no threshold sweep for these models: run the dump with --sweep score=0.5:0.95:0.05")
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    ax = figure.add_subplot()
    styles = ["-", "--", ":", "-."]
    for model in shown:
        results = pd.DataFrame([{"score": r["score"], "overlap": r["overlap"], "value": r[group][metric]}
                                for r in sweep[model]["results"]])
        overlaps = sorted(results["overlap"].unique())
        for k, overlap in enumerate(overlaps):
            line = results[results["overlap"] == overlap].sort_values("score")
            label = f"{model}" + (f", overlap {overlap:g}" if len(overlaps) > 1 else "")
            ax.plot(line["score"], line["value"], styles[k % len(styles)], marker="o", markersize=3,
                    color=(colors or {}).get(model), label=label)
        default = sweep[model].get("default")
        if default:
            row = results[(results["score"] == default["score"]) & (results["overlap"] == default["overlap"])]
            ax.plot(row["score"], row["value"], "*", color="black", markersize=12)
        best = results.loc[results["value"].astype(float).idxmax()] if results["value"].notna().any() else None
        if best is not None:
            ax.plot([best["score"]], [best["value"]], "o", markersize=11, markerfacecolor="none",
                    color=(colors or {}).get(model), label=f"{model} best: {best['value']:.4f} at score "
                                                            f"{best['score']:g}, overlap {best['overlap']:g}")
    ax.plot([], [], "*", color="black", markersize=10, label="default setting")
    ax.set_xlabel("score threshold")
    ax.set_ylabel(f"{metric.upper()} ({group.lower()})")
    ax.set_title(f"{metric.upper()} of the panoptic merge's settings ({group.lower()} classes)")
    ax.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1))
    return figure


def model_colors(models: list[str]) -> dict[str, str]:
    """One colour per model, the same in every chart."""
    palette = sns.color_palette("colorblind", max(len(models), 1)).as_hex()
    return dict(zip(models, palette, strict=False))
