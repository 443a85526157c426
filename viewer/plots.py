"""Seaborn charts of the dataset view. Figures are built without pyplot, so no global figure registry grows and
concurrent sessions do not draw into each other's axes."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # the server has no display; must precede any pyplot import by seaborn

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import seaborn as sns  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

GOOD, BAD = "#009E73", "#D55E00"


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
    """Per-class A - B sorted from A's largest lead to B's, green where A is better, red where B is."""
    if not delta_column or delta_column not in compare:
        return _empty("choose two different models A and B to see the per-class difference")
    values = compare[["class", delta_column]].dropna()
    if len(values) > max_classes:  # keep both ends: where A leads most and where B leads most
        half = max_classes // 2
        values = pd.concat([values.head(half), values.tail(max_classes - half)])
    if values.empty:
        return _empty("no class where both models are active")
    values = values.assign(better=np.where(values[delta_column] >= 0, "A better", "B better"))
    figure = _figure(len(values))
    ax = figure.add_subplot()
    sns.barplot(data=values, y="class", x=delta_column, hue="better", palette={"A better": GOOD, "B better": BAD},
                dodge=False, orient="h", ax=ax, legend=False)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_ylabel("")
    more = f" ({len(values)} of {len(compare)} classes: both ends)" if len(compare) > len(values) else ""
    ax.set_title(f"{delta_column}, sorted{more}")
    return figure


def summary_chart(summary: pd.DataFrame, colors: dict[str, str] | None = None) -> Figure:
    """PQ over all, thing and stuff classes per model."""
    if summary.empty:
        return _empty("no metrics: no model has counts in segment_stats.csv")
    long = summary.melt(id_vars=["model"], value_vars=["PQ", "PQ things", "PQ stuff"], var_name="classes",
                        value_name="PQ value").replace({"classes": {"PQ": "all", "PQ things": "things",
                                                                    "PQ stuff": "stuff"}})
    figure = Figure(figsize=(9, 2.8), layout="constrained")
    ax = figure.add_subplot()
    sns.barplot(data=long, x="classes", y="PQ value", hue="model", palette=colors, ax=ax)
    ax.set_ylim(0, 1)
    ax.set_xlabel("")
    ax.set_ylabel("PQ")
    ax.set_title("PQ over all, thing and stuff classes")
    ax.legend(loc="upper right", fontsize="small")
    return figure


def model_colors(models: list[str]) -> dict[str, str]:
    """One colour per model, the same in every chart."""
    palette = sns.color_palette("colorblind", max(len(models), 1)).as_hex()
    return dict(zip(models, palette, strict=False))
