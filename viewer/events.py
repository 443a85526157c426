"""What each event of the page does, as plain functions of the opened folder and the controls' values.

gradio_app.py binds the folder and maps the typed results onto components; tests call these directly. A
`UserError` is a message for the person at the page (the app shows it as an error toast).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dump.folder import PRESENCE_SCORE
from viewer import analysis, dataset, filters, instance_errors, live, navigation, plots, tables
from viewer.index import FolderIndex
from viewer.markup import text
from viewer.panels import (
    INSPECTOR_COLUMNS,
    DisplayOptions,
    build_panels,
    image_panels,
    inspect_maps,
    inspect_pixel,
    legend,
    legend_classes,
    model_title,
    panels_html,
    png_bytes,
)
from viewer.task_stats import RANK_METRICS

NO_PIXEL = pd.DataFrame(columns=list(INSPECTOR_COLUMNS))  # the inspector before a click


class UserError(ValueError):
    """Something the user asked for that cannot be done; the message says what to do instead."""


def whole_number(value) -> int | None:
    """A number box's value as an int; None when empty (Gradio sends None or NaN)."""
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else int(value)


def real_number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


# ------------------------------------------------------------------------------------------------ images tab

@dataclass(frozen=True)
class Display:
    """What the image panels show: the chosen models (in the folder's order) and the display options."""

    models: list[str]
    options: DisplayOptions


def chosen_models(folder: FolderIndex, chosen) -> list[str]:
    """The folder's models among those ticked, in the folder's order (anything else is ignored)."""
    return [m for m in folder.models if m in (chosen or [])]


def display(folder: FolderIndex, shown, mode: str, opacity: float, borders: bool, error_maps: bool,
            pair_map: bool, model_a: str | None, model_b: str | None, min_score: float = PRESENCE_SCORE,
            iou: float = 0.5) -> Display:
    """The display controls' values as a Display; models not in the folder are ignored. `min_score`: instances
    scored below are not drawn; `iou`: the instance error maps' matching threshold."""
    pair = (model_a, model_b) if pair_map and model_a and model_b and model_a != model_b else None
    return Display(chosen_models(folder, shown),
                   DisplayOptions(mode=mode, opacity=float(opacity), borders=bool(borders),
                                  error_maps=bool(error_maps), pair=pair,
                                  min_score=PRESENCE_SCORE if min_score is None else float(min_score),
                                  iou=0.5 if iou is None else float(iou)))


def class_difference_metric(folder: FolderIndex, models: list[str]) -> str:
    """Per-class differences in PQ between panoptic models, else in IoU (the metric models of every task but
    instance share)."""
    return "PQ" if all(folder.model_tasks[m] == "panoptic" for m in models) else "IoU"


@dataclass(frozen=True)
class ImagePage:
    """Everything on the Images tab that depends on the current image."""

    view: dict
    name: str
    position: str
    panels: str
    inspector: pd.DataFrame
    metrics: pd.DataFrame
    pairs: object  # a pandas Styler
    classes: pd.DataFrame
    class_differences: object


@dataclass(frozen=True)
class ImageList:
    """The current list of images, as a table, and a line saying what it is."""

    table: pd.DataFrame
    status: str


def show_image(folder: FolderIndex, view: dict, shown: Display) -> ImagePage:
    pos = view["current"]
    if pos is None:
        return ImagePage(view, "", navigation.describe(folder, view), "<p>No image in this list.</p>", NO_PIXEL,
                         tables.image_metrics_table(folder, 0, []), None, None, None)
    panels, photo = image_panels(folder, pos, shown.models, shown.options)
    entry = folder.manifest["images"][pos]
    html = panels_html(panels, photo, legend_classes(folder, pos, shown.models, shown.options.min_score),
                       folder.images[pos], shown.options, size=(entry.get("height"), entry.get("width")))
    metrics = tables.image_metrics_table(folder, pos, shown.models)
    class_table = tables.image_class_table(folder, pos, shown.models)
    differences = tables.class_difference_table(class_table, shown.models,
                                                class_difference_metric(folder, shown.models))
    return ImagePage(view, folder.images[pos], navigation.describe(folder, view), html, NO_PIXEL,
                     tables.rounded(metrics), tables.style_differences(tables.pairwise_table(metrics)),
                     tables.rounded(class_table), tables.style_differences(differences))


def _list_table(folder: FolderIndex, view: dict, models: list[str]) -> pd.DataFrame:
    if view["ranking"]:
        return filters.rank_images(folder, view["filtered"], **view["ranking"]).table
    return tables.image_list_table(folder, view["positions"], models)


def image_list(folder: FolderIndex, view: dict, models: list[str], note: str = "") -> ImageList:
    status = f"**{len(view['positions'])} images** · {view['label']}"
    if view["left_out"]:
        status += f" · {view['left_out']} left out (metric undefined or missing for A or B)"
    return ImageList(tables.rounded(_list_table(folder, view, models)), status + (f" · {note}" if note else ""))


def open_page(folder: FolderIndex, wanted: str | None, shown: Display) -> tuple[ImagePage, ImageList]:
    """A new session: all images, standing on the one the link names (`?image=`) when the folder has it."""
    view = navigation.new_view(range(folder.n_images))
    pos = folder.position(wanted)
    if pos is not None:
        view = navigation.go_to(view, pos)
    note = f"Image {text(wanted)} from the link is not in this folder." if wanted and pos is None else ""
    return show_image(folder, view, shown), image_list(folder, view, shown.models, note)


def filter_images(folder: FolderIndex, image_filter: filters.ImageFilter,
                  shown: Display) -> tuple[ImagePage, ImageList]:
    positions = filters.filter_images(folder, image_filter)
    view = navigation.new_view(positions, filters.describe(image_filter, folder.classes.label))
    return show_image(folder, view, shown), image_list(folder, view, shown.models)


def all_images(folder: FolderIndex, shown: Display) -> tuple[ImagePage, ImageList]:
    view = navigation.new_view(range(folder.n_images))
    return show_image(folder, view, shown), image_list(folder, view, shown.models)


def rank(folder: FolderIndex, view: dict, model_a: str, model_b: str, order: str, metric: str, top_n,
         shown: Display) -> tuple[ImagePage, ImageList]:
    """Ranks the filtered images by the signed difference of a per-image metric of A and B ("auto": the first
    metric both have: PQ, else mIoU, else AP@0.5)."""
    if not model_a or not model_b or model_a == model_b:
        raise UserError("Choose two different models A and B to rank by their difference.")
    try:
        metric = filters.ranking_metric(folder, model_a, model_b, metric)
    except ValueError as e:
        raise UserError(str(e)) from None
    ranking = {"model_a": model_a, "model_b": model_b, "order": order, "metric": metric,
               "top_n": whole_number(top_n) or None}
    result = filters.rank_images(folder, view["filtered"], **ranking)
    label = f"ranked: {filters.ORDERS[order]} (A = {text(model_a)}, B = {text(model_b)}, Δ{RANK_METRICS[metric]})"
    ranked = navigation.new_view(result.positions, label, filtered=view["filtered"], ranking=ranking,
                                 left_out=result.left_out)
    return show_image(folder, ranked, shown), image_list(folder, ranked, shown.models)


def step(folder: FolderIndex, view: dict, delta: int, shown: Display) -> ImagePage:
    return show_image(folder, navigation.step(view, delta), shown)


def jump(folder: FolderIndex, view: dict, text: str, shown: Display) -> ImagePage:
    pos = folder.position(text)
    if pos is None:
        raise UserError(f"No image {text!r} in this folder: give its index, its val_XXXX name or its key.")
    return show_image(folder, navigation.go_to(view, pos), shown)


def select_row(folder: FolderIndex, view: dict, row: list | None, shown: Display) -> ImagePage:
    """Opens the image of a clicked row of the list (its first cell names it)."""
    pos = folder.position(row[0]) if row else None
    return show_image(folder, view if pos is None else navigation.go_to(view, pos), shown)


def inspect(folder: FolderIndex, view: dict, models: list[str], x, y,
            options: DisplayOptions | None = None) -> pd.DataFrame:
    """The pixel inspector's table at (x, y) of the current image (instances as the display options show them)."""
    if view["current"] is None or x is None or y is None:
        return NO_PIXEL
    try:
        return inspect_pixel(folder, view["current"], models, int(x), int(y), options)
    except IndexError as e:
        raise UserError(str(e)) from None


def export_list(folder: FolderIndex, view: dict, models: list[str]) -> str:
    return tables.write_csv(_list_table(folder, view, models), f"images_{view['label']}")


def export_image(folder: FolderIndex, view: dict, models: list[str], x, y) -> list[str]:
    """CSV files of the current image's tables (and of the inspected pixel, when there is one)."""
    if view["current"] is None:
        return []
    pos, name = view["current"], folder.images[view["current"]]
    metrics = tables.image_metrics_table(folder, pos, models)
    class_table = tables.image_class_table(folder, pos, models)
    differences = tables.class_difference_table(class_table, models, class_difference_metric(folder, models))
    paths = [tables.write_csv(metrics, f"{name}_metrics"),
             tables.write_csv(tables.pairwise_table(metrics), f"{name}_pairwise"),
             tables.write_csv(class_table, f"{name}_classes"),
             tables.write_csv(differences, f"{name}_class_differences")]
    x, y = whole_number(x), whole_number(y)
    if x is not None and y is not None:
        paths.append(tables.write_csv(inspect(folder, view, models, x, y), f"{name}_pixel_{x}_{y}"))
    return paths


# ----------------------------------------------------------------------------------------------- dataset tab

@dataclass(frozen=True)
class DatasetQuery:
    """The Dataset tab's controls."""

    models: list[str]
    metric: str = "PQ"  # PQ, SQ, RQ, IoU or AP
    scope: str = "all"  # "all" images or the current "list"
    kind: str = "all"  # "all", "thing" or "stuff" classes
    model_a: str | None = None
    model_b: str | None = None
    class_filter: str = "none"  # "none", "a_better", "above", "below"
    value: float | None = None

    def positions(self, view: dict):
        return view["positions"] if self.scope == "list" else None

    def key(self, view: dict) -> tuple:
        """What the pages this query makes depend on: the controls and, for the current list, its images."""
        positions = self.positions(view)
        return (tuple(self.models), self.metric, self.scope, self.kind, self.model_a, self.model_b,
                self.class_filter, self.value, None if positions is None else tuple(positions))

    def pair(self) -> tuple[str, str] | None:
        """The two models A and B when they are two different chosen ones."""
        chosen = [m for m in (self.model_a, self.model_b) if m in self.models]
        return (self.model_a, self.model_b) if len(set(chosen)) == 2 else None


@dataclass(frozen=True)
class DatasetPage:
    summary: pd.DataFrame
    summary_chart: object  # matplotlib Figures
    metric_chart: object
    delta_chart: object
    table: object  # a DataFrame, or a Styler when a Δ column is coloured
    status: str
    intervals: pd.DataFrame  # ΔPQ A - B with its paired bootstrap interval, All / Things / Stuff


def _intervals(folder: FolderIndex, view: dict, query: DatasetQuery) -> dict | None:
    pair = query.pair()
    return dataset.pair_intervals(folder, *pair, query.positions(view)) if pair else None


def _dataset_tables(folder: FolderIndex, view: dict, query: DatasetQuery):
    """Per-class metrics of the chosen models, the classes passing the filter (ΔPQ with its interval), and the
    summary."""
    positions = query.positions(view)
    per_class = dataset.all_class_metrics(folder, query.models, positions)
    value = real_number(query.value)
    compare = dataset.compare_classes(
        per_class, query.models, query.metric, query.model_a, query.model_b,
        min_delta=value if query.class_filter == "a_better" else None,
        threshold_side=query.class_filter if query.class_filter in ("above", "below") else None,
        threshold=value, kind=query.kind)
    if query.metric == "PQ" and query.pair() and any(str(c).startswith("ΔPQ") for c in compare.columns):
        compare = dataset.with_intervals(compare, _intervals(folder, view, query))
    summary = dataset.summary_table(folder, query.models, positions).merge(
        dataset.task_summary(folder, query.models, positions), on="model", how="left")
    return per_class, compare, summary


def dataset_page(folder: FolderIndex, view: dict, query: DatasetQuery) -> DatasetPage:
    per_class, compare, summary = _dataset_tables(folder, view, query)
    pair = query.pair()
    intervals = dataset.interval_summary(_intervals(folder, view, query), *pair) if pair else \
        dataset.interval_summary(None, "A", "B")
    delta_column = next((c for c in compare.columns if str(c).startswith("Δ")), None)
    scope = (f"{len(view['positions'])} images of the current list" if query.scope == "list"
             else f"all {folder.n_images} images")
    status = (f"{len(compare)} of {per_class['class id'].nunique()} active classes pass the filters · "
              f"counts summed over {scope}" + dataset_note(folder, query))
    colors = plots.model_colors(folder.models)
    return DatasetPage(tables.rounded(summary), plots.summary_chart(summary, colors),
                       plots.class_metric_chart(compare, query.models, query.metric, colors),
                       plots.delta_chart(compare, delta_column),
                       tables.style_differences(compare) if delta_column else tables.rounded(compare), status,
                       tables.style_differences(intervals, digits=4))


def dataset_note(folder: FolderIndex, query: DatasetQuery) -> str:
    """Where the chosen metric comes from, for models of other tasks than panoptic."""
    notes = []
    if query.metric in ("IoU", "AP") and any(folder.model_tasks[m] == "panoptic" for m in query.models):
        notes.append(f"a panoptic model's {query.metric} comes from its "
                     f"{'class map' if query.metric == 'IoU' else 'thing segments with their scores'}")
    if query.metric in ("PQ", "SQ", "RQ") and any(folder.model_tasks[m] != "panoptic" for m in query.models):
        notes.append("semantic and instance models have no PQ: choose IoU or AP to compare them")
    if query.metric == "AP" and query.scope == "list":
        notes.append("AP is over all images (it needs every detection; it is not recomputed for a list)")
    return "".join(f" · {n}" for n in notes)


def export_dataset(folder: FolderIndex, view: dict, query: DatasetQuery) -> list[str]:
    per_class, compare, summary = _dataset_tables(folder, view, query)
    return [tables.write_csv(compare, f"classes_{query.metric}_compared"),
            tables.write_csv(per_class, "classes_per_model"), tables.write_csv(summary, "summary")]


# ------------------------------------------------------------------------------------------ errors view

@dataclass(frozen=True)
class ErrorsPage:
    """The Errors view: per model and per class (A and B side by side), errors by type and ΔPQ if fixed."""

    note: str
    summary: pd.DataFrame
    summary_chart: object
    classes: pd.DataFrame
    class_chart: object
    instance_note: str
    instances: pd.DataFrame
    instance_chart: object


def _error_models(query: DatasetQuery) -> list[str]:
    """The models of the per-class comparison: A and B when chosen, else the first two chosen."""
    return list(query.pair() or query.models[:2])


def errors_page(folder: FolderIndex, view: dict, query: DatasetQuery, group: str = "All") -> ErrorsPage:
    tide = instance_errors.tide_table(folder, query.models)
    instance_note = " ".join(filter(None, [instance_errors.TIDE_NOTE,
                                           instance_errors.no_tide_note(folder, query.models)]))
    positions = query.positions(view)
    query = DatasetQuery(**{**query.__dict__, "models": [m for m in query.models if m in folder.panoptic_models]})
    summary = analysis.error_summary(folder, query.models, positions, group)
    classes = analysis.class_errors(folder, _error_models(query), positions, query.kind)
    note = " ".join(filter(None, [analysis.NOT_ADDITIVE, "Click a count or ΔPQ to list the images where that "
                                  "type costs the most.", analysis.no_analysis_note(folder)]))
    return ErrorsPage(note, tables.rounded(summary, 4), plots.error_chart(summary), tables.rounded(classes, 4),
                      plots.class_error_chart(classes), instance_note, tables.rounded(tide, 4), plots.tide_chart(tide))


def instance_comparison(folder: FolderIndex, query: DatasetQuery) -> tuple[pd.DataFrame, str]:
    """Mask AP of A against B (the chosen pair when both are scored as instances, else the first two chosen
    models that are) with paired bootstrap intervals, from the folder's COCO instance files."""
    pair = [m for m in query.pair() or () if instance_errors.instance_entry(folder, m)]
    scored = pair if len(pair) == 2 else [m for m in query.models if instance_errors.instance_entry(folder, m)]
    if len(scored) < 2:
        raise UserError("Choose two models scored as instances (instance models, or panoptic ones: their thing "
                        "segments).")
    model_a, model_b = scored[:2]
    try:
        table = instance_errors.compare_ap(folder, model_a, model_b)
    except ValueError as e:  # FolderError included: an unusable COCO file of the folder
        raise UserError(f"Cannot compare {model_a} and {model_b}: {e}") from None
    return tables.rounded(table, 4), (f"{model_a} (A) against {model_b} (B) on every image with instance ground "
                                      f"truth: {instance_errors.COMPARISON_NOTE}.")


@dataclass(frozen=True)
class ErrorChoice:
    """What a click on an error table names: a model, an error type and optionally a class."""

    model: str
    fix: str
    class_id: int | None = None


def error_choice(folder: FolderIndex, table: str, row: list | None, column: int | None) -> ErrorChoice | None:
    """The choice a click on cell (row, column) of the "summary" or "classes" error table makes; None when the
    cell is no error count or ΔPQ."""
    columns = ["model", "PQ", *analysis.COLUMN_FIX] if table == "summary" else \
        ["class id", "class", "kind", "model", "PQ", *analysis.COLUMN_FIX]
    if not row or column is None or not 0 <= column < len(columns) or columns[column] not in analysis.COLUMN_FIX:
        return None
    values = dict(zip(columns, row, strict=False))
    if values.get("model") not in folder.models:
        return None
    class_id = int(values["class id"]) if table == "classes" else None
    return ErrorChoice(values["model"], analysis.COLUMN_FIX[columns[column]], class_id)


def error_images(folder: FolderIndex, view: dict, query: DatasetQuery, choice: ErrorChoice,
                 top_n) -> ImageList:
    """The images where fixing the chosen errors gains the most per-image PQ (click one to open it)."""
    if choice.model not in folder.models:
        raise UserError("Choose a model of this folder.")
    table = analysis.images_by_fix(folder, choice.model, choice.fix, choice.class_id, query.positions(view),
                                   whole_number(top_n) or None)
    what = analysis.FIX_LABELS[choice.fix] + ("" if choice.class_id is None
                                              else f" of {folder.classes.label(choice.class_id)}")
    status = (f"**{len(table)} images** where fixing {text(what)} errors helps {text(choice.model)} most "
              "(per-image PQ), "
              "best first; click one to open it")
    return ImageList(tables.rounded(table, 4), status + (f" · {analysis.no_analysis_note(folder)}"
                                                          if not folder.has_analysis else ""))


def open_listed(folder: FolderIndex, listed: list[str], name: str | None, label: str,
                shown: Display) -> tuple[ImagePage, ImageList]:
    """Opens image `name` on the Images tab with the `listed` images as the current list."""
    positions = [p for p in (folder.position(n) for n in listed) if p is not None]
    pos = folder.position(name)
    if pos is None:
        raise UserError(f"No image {name!r} in this folder.")
    view = navigation.new_view(positions or [pos], label, current=pos)
    return show_image(folder, view, shown), image_list(folder, view, shown.models)


# --------------------------------------------------------------------------------------- thresholds view

@dataclass(frozen=True)
class SweepPage:
    chart: object
    table: pd.DataFrame
    status: str


def sweep_page(folder: FolderIndex, models: list[str], metric: str = "pq", group: str = "All") -> SweepPage:
    table = dataset.sweep_table(folder.sweep, models)
    if table.empty:
        status = ("No threshold sweep for these models in this folder. Make one with the dump: "
                  "`python predict_dump.py --data DIR --model ... --out DIR --sweep score=0.5:0.95:0.05 "
                  "[overlap=0.6:0.9:0.1]` (it needs the models' logits, so --reindex cannot add it).")
    else:
        best = table[table["best PQ"]]
        status = "Best PQ: " + "; ".join(
            f"{text(r.model)} {r.PQ:.4f} at score {r.score:g}, overlap {r.overlap:g}" for r in best.itertuples()) + \
            " · ★ the default setting · " + ", ".join(
            f"{text(m)}: {folder.sweep[m]['images']} images" for m in table["model"].unique())
    return SweepPage(plots.sweep_chart(folder.sweep, models, metric, group, plots.model_colors(folder.models)),
                     tables.rounded(table, 4), status)


def confusion(folder: FolderIndex, view: dict, models: list[str], scope: str,
              progress=None) -> tuple[pd.DataFrame, str]:
    """The confusion table of unmatched segments and its CSV; `progress(fraction, text)` as images are read."""
    positions = view["positions"] if scope == "list" else None
    table = dataset.confusion_table(folder, models, positions, progress=progress)
    return tables.rounded(table), tables.write_csv(table, "unmatched_segments_confusion")


# ---------------------------------------------------------------------------------------- confusion view

@dataclass(frozen=True)
class ConfusionPage:
    """The semantic confusion matrix of one model: a heatmap, the largest confusions (click one to list its
    images) and the choices of the confusion picker."""

    chart: np.ndarray
    grid: plots.HeatmapGrid | None
    top: pd.DataFrame
    choices: list[tuple[str, str]]
    status: str


def semantic_models(folder: FolderIndex) -> list[str]:
    """The models with a semantic map: semantic models, and panoptic ones (their class map)."""
    return [m for m in folder.models if "semantic" in folder.scored_tasks(m)]


def confusion_page(folder: FolderIndex, view: dict, model: str | None, scope: str, max_classes=20) -> ConfusionPage:
    if model not in semantic_models(folder):
        raise UserError("Choose a semantic or panoptic model of this folder.")
    positions = view["positions"] if scope == "list" else None
    matrix = dataset.confusion_matrix(folder, model, positions)
    top = dataset.top_confusions(folder, model, positions)
    task = folder.model_tasks[model]
    title = (f"{model}: ground truth x prediction ({'its class map' if task == 'panoptic' else 'semantic'}), "
             f"{'the current list' if scope == 'list' else 'all images'}")
    chart, grid = plots.confusion_heatmap(matrix, folder.classes.names, title, whole_number(max_classes) or 20)
    choices = [confusion_option(folder, r["gt id"], r["predicted id"]) for r in top.to_dict("records")]
    status = (f"{int(matrix.sum()):,} labelled pixels; the largest confusions of {model} ({task}) first. Click a "
              "cell of the matrix or a row of the table (or pick one below) to list the images where it happens "
              "most.")
    return ConfusionPage(chart, grid, tables.rounded(top.drop(columns=["gt id", "predicted id"]), 4), choices,
                         status)


def confusion_option(folder: FolderIndex, gt_class: int, predicted: int) -> tuple[str, str]:
    """A confusion picker option: (label, value "gt:predicted"), predicted -1 for no class."""
    label = f"{dataset.confusion_label(folder, gt_class)} → {dataset.confusion_label(folder, predicted)}"
    return label, f"{gt_class}:{predicted}"


def heatmap_choice(folder: FolderIndex, grid: plots.HeatmapGrid | None, x, y) -> str:
    """The picker value ("gt:predicted") of the heatmap cell under picture pixel (x, y) (the column of no class
    is -1); a UserError outside the cells or on the diagonal, which holds correct pixels, not confusions."""
    cell = grid.cell(float(x), float(y)) if grid is not None else None
    if cell is None:
        raise UserError("Click a cell of the matrix.")
    gt_class, predicted = cell
    if gt_class == predicted:
        raise UserError(f"That cell is {dataset.confusion_label(folder, gt_class)} predicted right: click a cell "
                        "off the diagonal to list the images of a confusion.")
    return confusion_option(folder, gt_class, -1 if predicted == grid.columns[-1] else predicted)[1]


def confusion_choice(folder: FolderIndex, view: dict, model: str, scope: str, row_index: int | None) -> str | None:
    """The picker value ("gt:predicted") of a clicked row of the top confusions."""
    positions = view["positions"] if scope == "list" else None
    top = dataset.top_confusions(folder, model, positions)
    if row_index is None or not 0 <= row_index < len(top):
        return None
    return f"{top['gt id'].iloc[row_index]}:{top['predicted id'].iloc[row_index]}"


def confusion_images(folder: FolderIndex, view: dict, model: str, choice: str | None, scope: str,
                     top_n) -> ImageList:
    """The images where the chosen confusion ("gt:predicted") covers the most pixels."""
    if not choice or model not in semantic_models(folder):
        raise UserError("Choose a model and a confusion first.")
    gt_class, predicted = (int(v) for v in str(choice).split(":"))
    positions = view["positions"] if scope == "list" else None
    table = dataset.confusion_images(folder, model, gt_class, predicted, positions, whole_number(top_n) or None)
    what = f"{dataset.confusion_label(folder, gt_class)} predicted as {dataset.confusion_label(folder, predicted)}"
    return ImageList(tables.rounded(table, 4), f"**{len(table)} images** where {model} has {what} on the most "
                                               "pixels; click one to open it")


# -------------------------------------------------------------------------------------------------- live tab

def live_run(folder: FolderIndex, photo, models: list[str]) -> tuple[live.LiveResult, str]:
    if photo is None:
        raise UserError("Upload an image first.")
    if not models:
        raise UserError("Choose at least one model whose checkpoint is available locally.")
    try:
        photo = live.load_photo(photo)
    except ValueError as e:
        raise UserError(f"{str(e)[0].upper()}{str(e)[1:]}.") from None
    result = live.run_models(folder, models, photo)
    return result, "Ran " + ", ".join(f"{text(m)}: {s:.1f} s" for m, s in result.seconds.items()) + "."


def live_panels(folder: FolderIndex, result: live.LiveResult | None, mode: str, opacity: float,
                borders: bool) -> str:
    if result is None:
        return "<p>Upload an image and run a model.</p>"
    options = DisplayOptions(mode=mode, opacity=float(opacity), borders=bool(borders))
    titles = {m: model_title(folder, m) for m in result.labels}
    panels = build_panels(None, result.labels, folder.classes.palette, options, titles=titles)
    present = [s["category_id"] for labels in result.labels.values() if not isinstance(labels, str)
               for s in labels.segments.values()]
    return panels_html(panels, png_bytes(result.photo), legend(folder, present), f"live-{id(result)}", options,
                       size=result.photo.shape[:2])


def live_inspect(folder: FolderIndex, result: live.LiveResult | None, x: int, y: int) -> pd.DataFrame:
    if result is None:
        return NO_PIXEL
    try:
        return inspect_maps(None, result.labels, int(x), int(y), folder.classes.label)
    except IndexError as e:
        raise UserError(str(e)) from None
