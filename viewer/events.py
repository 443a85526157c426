"""What each event of the page does, as plain functions of the opened folder and the controls' values.

gradio_app.py binds the folder and maps the typed results onto components; tests call these directly. A
`UserError` is a message for the person at the page (the app shows it as an error toast).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from viewer import dataset, filters, live, navigation, plots, tables
from viewer.index import FolderIndex
from viewer.panels import (
    INSPECTOR_COLUMNS,
    DisplayOptions,
    build_panels,
    image_panels,
    inspect_maps,
    inspect_pixel,
    legend,
    legend_classes,
    panels_html,
    png_bytes,
)

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
            pair_map: bool, model_a: str | None, model_b: str | None) -> Display:
    """The display controls' values as a Display; models not in the folder are ignored."""
    pair = (model_a, model_b) if pair_map and model_a and model_b and model_a != model_b else None
    return Display(chosen_models(folder, shown),
                   DisplayOptions(mode=mode, opacity=float(opacity), borders=bool(borders),
                                  error_maps=bool(error_maps), pair=pair))


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
    html = panels_html(panels, photo, legend_classes(folder, pos, shown.models), folder.images[pos],
                       shown.options, size=(entry.get("height"), entry.get("width")))
    metrics = tables.image_metrics_table(folder, pos, shown.models)
    class_table = tables.image_class_table(folder, pos, shown.models)
    return ImagePage(view, folder.images[pos], navigation.describe(folder, view), html, NO_PIXEL,
                     tables.rounded(metrics), tables.style_differences(tables.pairwise_table(metrics)),
                     tables.rounded(class_table),
                     tables.style_differences(tables.class_difference_table(class_table, shown.models)))


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
    note = f"Image {wanted!r} from the link is not in this folder." if wanted and pos is None else ""
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
    """Ranks the filtered images by the signed difference of a per-image metric of A and B."""
    if not model_a or not model_b or model_a == model_b:
        raise UserError("Choose two different models A and B to rank by their difference.")
    ranking = {"model_a": model_a, "model_b": model_b, "order": order, "metric": metric,
               "top_n": whole_number(top_n) or None}
    result = filters.rank_images(folder, view["filtered"], **ranking)
    label = f"ranked: {filters.ORDERS[order]} (A = {model_a}, B = {model_b}, Δ{metric.upper()})"
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


def inspect(folder: FolderIndex, view: dict, models: list[str], x, y) -> pd.DataFrame:
    """The pixel inspector's table at (x, y) of the current image."""
    if view["current"] is None or x is None or y is None:
        return NO_PIXEL
    try:
        return inspect_pixel(folder, view["current"], models, int(x), int(y))
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
    paths = [tables.write_csv(metrics, f"{name}_metrics"),
             tables.write_csv(tables.pairwise_table(metrics), f"{name}_pairwise"),
             tables.write_csv(class_table, f"{name}_classes"),
             tables.write_csv(tables.class_difference_table(class_table, models), f"{name}_class_differences")]
    x, y = whole_number(x), whole_number(y)
    if x is not None and y is not None:
        paths.append(tables.write_csv(inspect(folder, view, models, x, y), f"{name}_pixel_{x}_{y}"))
    return paths


# ----------------------------------------------------------------------------------------------- dataset tab

@dataclass(frozen=True)
class DatasetQuery:
    """The Dataset tab's controls."""

    models: list[str]
    metric: str = "PQ"
    scope: str = "all"  # "all" images or the current "list"
    kind: str = "all"  # "all", "thing" or "stuff" classes
    model_a: str | None = None
    model_b: str | None = None
    class_filter: str = "none"  # "none", "a_better", "above", "below"
    value: float | None = None

    def positions(self, view: dict):
        return view["positions"] if self.scope == "list" else None


@dataclass(frozen=True)
class DatasetPage:
    summary: pd.DataFrame
    summary_chart: object  # matplotlib Figures
    metric_chart: object
    delta_chart: object
    table: object  # a DataFrame, or a Styler when a Δ column is coloured
    status: str


def _dataset_tables(folder: FolderIndex, view: dict, query: DatasetQuery):
    """Per-class metrics of the chosen models, the classes passing the filter, and the summary."""
    positions = query.positions(view)
    per_class = dataset.class_metrics(folder, query.models, positions)
    value = real_number(query.value)
    compare = dataset.compare_classes(
        per_class, query.models, query.metric, query.model_a, query.model_b,
        min_delta=value if query.class_filter == "a_better" else None,
        threshold_side=query.class_filter if query.class_filter in ("above", "below") else None,
        threshold=value, kind=query.kind)
    return per_class, compare, dataset.summary_table(folder, query.models, positions)


def dataset_page(folder: FolderIndex, view: dict, query: DatasetQuery) -> DatasetPage:
    per_class, compare, summary = _dataset_tables(folder, view, query)
    delta_column = next((c for c in compare.columns if str(c).startswith("Δ")), None)
    scope = (f"{len(view['positions'])} images of the current list" if query.scope == "list"
             else f"all {folder.n_images} images")
    status = (f"{len(compare)} of {per_class['class id'].nunique()} active classes pass the filters · "
              f"counts summed over {scope}")
    colors = plots.model_colors(folder.models)
    return DatasetPage(tables.rounded(summary), plots.summary_chart(summary, colors),
                       plots.class_metric_chart(compare, query.models, query.metric, colors),
                       plots.delta_chart(compare, delta_column),
                       tables.style_differences(compare) if delta_column else tables.rounded(compare), status)


def export_dataset(folder: FolderIndex, view: dict, query: DatasetQuery) -> list[str]:
    per_class, compare, summary = _dataset_tables(folder, view, query)
    return [tables.write_csv(compare, f"classes_{query.metric}_compared"),
            tables.write_csv(per_class, "classes_per_model"), tables.write_csv(summary, "summary")]


def confusion(folder: FolderIndex, view: dict, models: list[str], scope: str,
              progress=None) -> tuple[pd.DataFrame, str]:
    """The confusion table of unmatched segments and its CSV; `progress(fraction, text)` as images are read."""
    positions = view["positions"] if scope == "list" else None
    table = dataset.confusion_table(folder, models, positions, progress=progress)
    return tables.rounded(table), tables.write_csv(table, "unmatched_segments_confusion")


# -------------------------------------------------------------------------------------------------- live tab

def live_run(folder: FolderIndex, photo, models: list[str]) -> tuple[live.LiveResult, str]:
    if photo is None:
        raise UserError("Upload an image first.")
    if not models:
        raise UserError("Choose at least one model whose checkpoint is available locally.")
    result = live.run_models(folder, models, photo)
    return result, "Ran " + ", ".join(f"{m}: {s:.1f} s" for m, s in result.seconds.items()) + "."


def live_panels(folder: FolderIndex, result: live.LiveResult | None, mode: str, opacity: float,
                borders: bool) -> str:
    if result is None:
        return "<p>Upload an image and run a model.</p>"
    options = DisplayOptions(mode=mode, opacity=float(opacity), borders=bool(borders))
    panels = build_panels(None, result.labels, folder.classes.palette, options)
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
