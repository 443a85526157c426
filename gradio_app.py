"""The model comparison web app: opens an output folder of predict_dump.py and serves it on 127.0.0.1.

    python gradio_app.py [OUTPUT_DIR] [--host 127.0.0.1] [--port 7860]

This file is the command line, the page layout and the wiring of events; what the events do lives in
`viewer/events.py` as plain functions of the opened folder. Per-user state (the image list, the position in it,
the live tab's last result) is gr.State, so two browser sessions never share it; the opened folder is shared.
"""

from __future__ import annotations

import argparse
import functools
import html
import ipaddress
import sys
import threading
from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace

import gradio as gr
import pandas as pd

from dump.folder import GT, PRESENCE_SCORE, FolderError
from eomt.images import MAX_BYTES
from viewer import analysis, events, filters, live, navigation
from viewer.cache import SharedResults
from viewer.events import NO_PIXEL, Display
from viewer.index import FolderIndex, check_annotations, load_folder, summary_markdown
from viewer.task_stats import RANK_METRICS

ASSETS = Path(__file__).resolve().parent / "viewer" / "assets"
PANELS_JS = (ASSETS / "panels.js").read_text()  # gr.HTML's js_on_load of both panel grids
NO_FOLDER = (
    "No output folder given, and the embedded demo cannot be built ({reason}). Create a folder with\n"
    "    python predict_dump.py --data DIR --model NAME=SOURCE --out DIR\n"
    "then open it with\n"
    "    python gradio_app.py DIR"
)
UPLOAD_LIMIT = MAX_BYTES  # the live tab's uploads; their pixels are capped separately (viewer/live.py)
LIVE_RESULT_SECONDS = 1800  # a session's last live result is dropped after this, whether or not the tab is open
CONCURRENT_EVENTS = 4  # handlers are numpy and PNG encoding; more threads than this only queue on 2-4 cores
# The browser restyles a panel grid (mode, opacity, borders) without a round trip; see assets/app.js.
RESTYLE_JS = "(mode, opacity, borders) => {{ window.vwStyle('{selector}', mode, opacity, borders); }}"


class NoFolderError(RuntimeError):
    pass


def default_folder() -> Path:
    """The folder opened when none is given: the embedded demo, built into the cache on first use (the only
    time the app needs torch); without the demo checkpoints, say how to make a folder."""
    from dump import demo

    try:
        return demo.default_demo_folder()
    except (FileNotFoundError, RuntimeError) as e:
        raise NoFolderError(NO_FOLDER.format(reason=e)) from None


def _for_user(handler):
    """Shows a UserError as Gradio's error toast instead of a failed event."""
    @functools.wraps(handler)
    def wrapped(*args, **kwargs):
        try:
            return handler(*args, **kwargs)
        except events.UserError as e:  # Gradio renders the message as HTML: show it as text
            raise gr.Error(html.escape(str(e))) from None
    return wrapped


def _rendered(outputs: dict) -> dict:
    """Each output in the form Gradio sends to the browser (charts drawn, tables serialised). A shared result is
    rendered once, here, instead of once per session, and nothing shared is rendered by two threads at once
    (matplotlib figures and pandas Stylers are not thread-safe)."""
    return {component: component.postprocess(value) for component, value in outputs.items()}


def _folder_title(folder: FolderIndex) -> str:
    problems = folder.problems
    return "Folder" + (f" · {len(problems)} problem(s)" if problems else "")


def build_app(folder: FolderIndex) -> gr.Blocks:
    with gr.Blocks(title="EoMT model comparison", analytics_enabled=False, fill_width=True,
                   delete_cache=(3600, 3600)) as demo:
        view = gr.State(navigation.new_view(range(folder.n_images)))  # per session; the load event sets it
        gr.Markdown("## EoMT model comparison")
        with gr.Accordion(_folder_title(folder), open=bool(folder.problems)) as folder_box:
            folder_summary = gr.Markdown(summary_markdown(folder), elem_id="vw-folder")
        with gr.Tabs() as tabs:
            with gr.Tab("Images", id="images"):
                images = _images_tab(demo, folder, view, folder_box, folder_summary)
            with gr.Tab("Dataset", id="dataset") as dataset_tab:
                _dataset_tab(folder, view, dataset_tab, images, tabs)
            with gr.Tab("Live", id="live"):
                _live_tab(folder)
    return demo


# ------------------------------------------------------------------------------------------------ images tab

@dataclass(frozen=True)
class ImagesTab:
    """What other tabs need of the Images tab to open an image there."""

    controls: list  # the display controls, in the order events.display takes them
    outputs: list  # the page and list components
    page_and_list: object  # (ImagePage, ImageList) -> {component: value}


def _list_column(folder: FolderIndex) -> SimpleNamespace:
    """The Images tab's left column: the filter, the ranking and the current list of images."""
    models = folder.models
    model_a, model_b = (models + [None])[0], (models[1:] or models + [None])[0]
    with gr.Column(scale=1, min_width=320):
        with gr.Accordion("Filter images", open=True):
            classes = gr.Dropdown([(f"{c.name} ({c.id})", c.id) for c in folder.classes], multiselect=True,
                                  label="Classes", elem_id="vw-classes")
            match = gr.Radio([("all of them", "all"), ("any of them", "any")], value="all",
                             label="Image contains")
            source = gr.Dropdown([("ground truth", GT)] + [(m, m) for m in models], value=GT, label="Look in")
            with gr.Row():
                min_classes = gr.Number(None, label="Min distinct classes", precision=0, minimum=0)
                max_classes = gr.Number(None, label="Max distinct classes (0: no limit)", precision=0,
                                        minimum=0)
            with gr.Row():
                min_instances = gr.Number(None, label="Min instances", precision=0, minimum=0)
                max_instances = gr.Number(None, label="Max instances (0: no limit)", precision=0, minimum=0)
            gr.Markdown("Instances: segments of the chosen classes (of all classes if none is chosen); a "
                        "stuff class counts once.")
            with gr.Row():
                filter_button = gr.Button("Apply filter", variant="primary", elem_id="vw-filter")
                clear_button = gr.Button("All images")
        with gr.Accordion("Rank by signed difference", open=True):
            with gr.Row():
                rank_a = gr.Dropdown(models, value=model_a, label="Model A")
                rank_b = gr.Dropdown(models, value=model_b, label="Model B")
            order = gr.Radio([(v, k) for k, v in filters.ORDERS.items()], value="a_better", label="Order")
            with gr.Row():
                metric = gr.Radio([("the one A and B share", "auto")] +
                                  [(label, key) for key, label in RANK_METRICS.items()], value="auto",
                                  label="Per-image metric (mIoU: a panoptic model's class map; AP and R: its "
                                  "thing segments; AP@0.5: the image's own COCO AP, R@0.5: recall)")
                top_n = gr.Number(20, label="Top N (0 = all)", precision=0, minimum=0)
            rank_button = gr.Button("Rank the filtered images", elem_id="vw-rank")
        list_status = gr.Markdown(elem_id="vw-list-status")
        image_list = gr.Dataframe(label="Images (click a row to open it)", interactive=False, max_height=420,
                                  elem_id="vw-image-list")
        export_list_button = gr.Button("Export this list as CSV", size="sm")
        export_list_file = gr.File(label="CSV", visible=False)
    return SimpleNamespace(classes=classes, clear_button=clear_button, export_list_button=export_list_button,
                           export_list_file=export_list_file, filter_button=filter_button,
                           image_list=image_list, list_status=list_status, match=match,
                           max_classes=max_classes, max_instances=max_instances, metric=metric,
                           min_classes=min_classes, min_instances=min_instances, order=order, rank_a=rank_a,
                           rank_b=rank_b, rank_button=rank_button, source=source, top_n=top_n)


def _image_column(folder: FolderIndex) -> SimpleNamespace:
    """The Images tab's right column: navigation, display controls, the panels, the inspector and the tables."""
    models = folder.models
    with gr.Column(scale=3):
        with gr.Row(equal_height=True):
            prev_button = gr.Button("◀ Previous", elem_id="vw-prev", scale=1, min_width=100)
            next_button = gr.Button("Next ▶", elem_id="vw-next", scale=1, min_width=100)
            image_name = gr.Textbox(show_label=False, container=False, interactive=False, scale=1,
                                    min_width=100, elem_id="vw-image-name")
            jump_box = gr.Textbox(show_label=False, container=False, scale=2, min_width=160,
                                  placeholder="go to: index, val_XXXX or key", elem_id="vw-jump")
            jump_button = gr.Button("Go", scale=0, min_width=60)
        position = gr.Markdown(elem_id="vw-position")
        with gr.Row():
            shown_models = gr.CheckboxGroup(models, value=models, label="Models shown")
            mode = gr.Radio([("Labels", "labels"), ("Overlay on photo", "overlay")], value="labels",
                            label="View", elem_id="vw-mode")
            opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Overlay opacity", elem_id="vw-opacity")
        with gr.Row():
            borders = gr.Checkbox(True, label="Instance borders")
            error_maps = gr.Checkbox(False, label="Error maps per model (each on its task)", elem_id="vw-errors")
            pair_map = gr.Checkbox(True, label="A vs B map (models of the ranking)")
        with gr.Row(visible=any(t == "instance" for t in folder.model_tasks.values())):
            min_score = gr.Slider(0, 1, value=PRESENCE_SCORE, step=0.05, label="Instances: score at least",
                                  elem_id="vw-min-score")
            iou = gr.Radio([("IoU 0.5", 0.5), ("IoU 0.75", 0.75)], value=0.5,
                           label="Instance error maps: TP / FP / FN at", elem_id="vw-iou")
        panels = gr.HTML("", js_on_load=PANELS_JS, elem_id="vw-panels")
        with gr.Row(equal_height=True):
            pixel_x = gr.Number(None, label="Pixel x", precision=0, minimum=0, elem_id="vw-x")
            pixel_y = gr.Number(None, label="Pixel y", precision=0, minimum=0, elem_id="vw-y")
            inspect_button = gr.Button("Inspect pixel", scale=0)
        inspector = gr.Dataframe(label="Pixel inspector (click a panel): every source at that pixel, its "
                                 "segment and what matching made of it", value=NO_PIXEL, interactive=False,
                                 elem_id="vw-inspector")
        image_metrics = gr.Dataframe(label="This image, per model: PQ/SQ/RQ (mean over its active classes) "
                                     "beside TP/FP/FN", interactive=False)
        pair_table = gr.Dataframe(label="Every pair of models, A − B (green: A better, red: worse)",
                                  interactive=False)
        class_table = gr.Dataframe(label="This image, per class and model", interactive=False, max_height=360)
        class_diff = gr.Dataframe(label="This image, per-class Δ for every pair (PQ; IoU when models of other "
                                  "tasks are shown)", interactive=False, max_height=360)
        export_image_button = gr.Button("Export this image's tables as CSV", size="sm")
        export_image_files = gr.File(label="CSV", file_count="multiple", visible=False)

    return SimpleNamespace(borders=borders, class_diff=class_diff, class_table=class_table,
                           error_maps=error_maps, export_image_button=export_image_button,
                           export_image_files=export_image_files, image_metrics=image_metrics,
                           image_name=image_name, inspect_button=inspect_button, inspector=inspector, iou=iou,
                           jump_box=jump_box, jump_button=jump_button, min_score=min_score, mode=mode,
                           next_button=next_button, opacity=opacity, pair_map=pair_map, pair_table=pair_table,
                           panels=panels, pixel_x=pixel_x, pixel_y=pixel_y, position=position,
                           prev_button=prev_button, shown_models=shown_models)


def _images_tab(demo: gr.Blocks, folder: FolderIndex, view: gr.State, folder_box, folder_summary) -> ImagesTab:
    with gr.Row(equal_height=False):
        picker, screen = _list_column(folder), _image_column(folder)

    # ---------------------------------------------------------------------------------------------- wiring
    controls = [screen.shown_models, screen.mode, screen.opacity, screen.borders, screen.error_maps,
                screen.pair_map, picker.rank_a, picker.rank_b, screen.min_score, screen.iou]
    page_outputs = [view, screen.image_name, screen.position, screen.panels, screen.inspector,
                    screen.image_metrics, screen.pair_table, screen.class_table, screen.class_diff]
    list_outputs = [picker.image_list, picker.list_status]

    def shown(values) -> Display:
        return events.display(folder, *values)

    def page(result: events.ImagePage) -> dict:
        return {view: result.view, screen.image_name: result.name, screen.position: result.position,
                screen.panels: result.panels, screen.inspector: result.inspector,
                screen.image_metrics: result.metrics, screen.pair_table: result.pairs,
                screen.class_table: result.classes, screen.class_diff: result.class_differences}

    def page_and_list(result: tuple[events.ImagePage, events.ImageList]) -> dict:
        image_page, listing = result
        return {**page(image_page), picker.image_list: listing.table, picker.list_status: listing.status}

    def on_load(request: gr.Request, *values):
        wanted = request.query_params.get("image") if request is not None else None
        # Problems found by the background check of the annotations appear on the next page load.
        return {**page_and_list(events.open_page(folder, wanted, shown(values))),
                folder_box: gr.Accordion(label=_folder_title(folder)), folder_summary: summary_markdown(folder)}

    def on_filter(view_value, chosen, match_value, source_value, low_classes, high_classes, low_instances,
                  high_instances, *values):
        # The number boxes show 0 when empty: a minimum of 0 and a maximum of 0 both mean "no limit".
        image_filter = filters.ImageFilter(
            tuple(int(c) for c in chosen or ()), match_value, source_value,
            events.whole_number(low_classes) or None, events.whole_number(high_classes) or None,
            events.whole_number(low_instances) or None, events.whole_number(high_instances) or None)
        return page_and_list(events.filter_images(folder, image_filter, shown(values)))

    def on_rank(view_value, a, b, order_value, metric_value, top, *values):
        return page_and_list(events.rank(folder, view_value, a, b, order_value, metric_value, top, shown(values)))

    def on_step(delta: int):
        return lambda view_value, *values: page(events.step(folder, view_value, delta, shown(values)))

    def on_jump(view_value, text, *values):
        return page(events.jump(folder, view_value, text, shown(values)))

    def on_select(view_value, evt: gr.SelectData, *values):
        return page(events.select_row(folder, view_value, evt.row_value, shown(values)))

    def on_inspect_click(view_value, evt: gr.EventData, *values):
        x, y = int(evt.x), int(evt.y)
        shown_now = shown(values)
        return x, y, events.inspect(folder, view_value, shown_now.models, x, y, shown_now.options)

    def on_inspect(view_value, x, y, *values):
        shown_now = shown(values)
        return events.inspect(folder, view_value, shown_now.models, x, y, shown_now.options)

    def models_of(chosen) -> list[str]:
        return events.chosen_models(folder, chosen)

    all_outputs = page_outputs + list_outputs
    demo.load(_for_user(on_load), controls, all_outputs + [folder_box, folder_summary], api_name="load")
    filter_inputs = [view, picker.classes, picker.match, picker.source, picker.min_classes, picker.max_classes,
                     picker.min_instances, picker.max_instances]
    picker.filter_button.click(_for_user(on_filter), filter_inputs + controls, all_outputs, api_name="filter")
    picker.clear_button.click(lambda *values: page_and_list(events.all_images(folder, shown(values))), controls,
                              all_outputs, api_name="clear_filter")
    rank_inputs = [view, picker.rank_a, picker.rank_b, picker.order, picker.metric, picker.top_n]
    picker.rank_button.click(_for_user(on_rank), rank_inputs + controls, all_outputs, api_name="rank")
    screen.prev_button.click(on_step(-1), [view] + controls, page_outputs, api_name="previous")
    screen.next_button.click(on_step(+1), [view] + controls, page_outputs, api_name="next")
    gr.on([screen.jump_button.click, screen.jump_box.submit], _for_user(on_jump), [view, screen.jump_box] + controls,
          page_outputs, api_name="jump")
    picker.image_list.select(on_select, [view] + controls, page_outputs, api_name="select_row")
    # What is drawn changes: render again (same image, the panel script keeps the zoom).
    gr.on([screen.shown_models.change, screen.error_maps.change, screen.pair_map.change, picker.rank_a.change,
           picker.rank_b.change, screen.min_score.release, screen.iou.change],
          lambda view_value, *values: page(events.show_image(folder, view_value, shown(values))),
          [view] + controls, page_outputs, api_name="render")
    # Only the styling changes: the browser restyles the panels, no round trip.
    styling = [screen.mode, screen.opacity, screen.borders]
    gr.on([screen.mode.change, screen.opacity.input, screen.borders.change], None, styling, None,
          js=RESTYLE_JS.format(selector="#vw-panels"), api_name="style")
    screen.image_name.change(None, [screen.image_name], None, js="(name) => { window.vwSetImageInUrl(name); }",
                             api_name="sync_url")
    screen.panels.click(_for_user(on_inspect_click), [view] + controls,
                        [screen.pixel_x, screen.pixel_y, screen.inspector], api_name="inspect_click")
    screen.inspect_button.click(_for_user(on_inspect), [view, screen.pixel_x, screen.pixel_y] + controls,
                                [screen.inspector], api_name="inspect")
    picker.export_list_button.click(
        lambda v, chosen: gr.File(events.export_list(folder, v, models_of(chosen)), visible=True),
        [view, screen.shown_models], [picker.export_list_file], api_name="export_list")
    screen.export_image_button.click(
        _for_user(lambda v, chosen, x, y: gr.File(events.export_image(folder, v, models_of(chosen), x, y) or None,
                                                  visible=True)),
        [view, screen.shown_models, screen.pixel_x, screen.pixel_y], [screen.export_image_files],
        api_name="export_image")
    return ImagesTab(controls, all_outputs, page_and_list)


# ----------------------------------------------------------------------------------------------- dataset tab

def _dataset_tab(folder: FolderIndex, view: gr.State, dataset_tab: gr.Tab, images: ImagesTab, tabs: gr.Tabs) -> None:
    models = folder.models
    model_a, model_b = (models + [None])[0], (models[1:] or models + [None])[0]
    with gr.Row():
        ds_models = gr.CheckboxGroup(models, value=models, label="Models")
        ds_metric = gr.Radio(["PQ", "SQ", "RQ", "IoU", "AP"], value="PQ",
                             label="Metric (IoU, AP: a panoptic model's class map, thing segments)")
        ds_scope = gr.Radio([("all images", "all"), ("the current image list", "list")], value="all",
                            label="Images")
        ds_kind = gr.Radio([("all", "all"), ("things", "thing"), ("stuff", "stuff")], value="all", label="Classes")
    with gr.Row():
        ds_a = gr.Dropdown(models, value=model_a, label="A")
        ds_b = gr.Dropdown(models, value=model_b, label="B")
        ds_filter = gr.Radio([("none", "none"), ("A better than B by at least X", "a_better"),
                              ("all models above X", "above"), ("all models below X", "below")], value="none",
                             label="Class filter", scale=2)
        ds_value = gr.Number(0.1, label="X", step=0.05)
    inputs = [view, ds_models, ds_metric, ds_scope, ds_kind, ds_a, ds_b, ds_filter, ds_value]

    def query(chosen, metric, scope, kind, a, b, class_filter, value) -> events.DatasetQuery:
        return events.DatasetQuery(events.chosen_models(folder, chosen), metric, scope, kind, a, b, class_filter,
                                   value)

    with gr.Tabs():
        with gr.Tab("Classes", id="classes"):
            _classes_view(folder, view, dataset_tab, inputs, query)
        with gr.Tab("Errors", id="errors", elem_id="vw-errors-tab") as errors_tab:
            _errors_view(folder, errors_tab, inputs, query, images, tabs)
        with gr.Tab("Thresholds", id="thresholds") as thresholds_tab:
            _thresholds_view(folder, thresholds_tab, ds_models)
        with gr.Tab("Confusion", id="confusion", elem_id="vw-confusion-tab") as confusion_tab:
            _confusion_view(folder, confusion_tab, inputs, images, tabs)


def _classes_view(folder: FolderIndex, view: gr.State, dataset_tab: gr.Tab, inputs: list, query) -> None:
    ds_button = gr.Button("Update", variant="primary")
    ds_status = gr.Markdown()
    ds_summary = gr.Dataframe(label="Per model: PQ of all, thing and stuff classes; mIoU, fwIoU, aAcc, mAcc and mask "
                              "AP, with the task each comes from (counts summed over the images)", interactive=False)
    ds_intervals = gr.Dataframe(label="ΔPQ A − B with its 95% paired bootstrap interval (1,000 resamples of the "
                                "images; grey: the interval contains 0, not significant)", interactive=False)
    ds_summary_plot = gr.Plot(label="PQ: all, things, stuff; mIoU; mask AP")
    with gr.Row():
        ds_metric_plot = gr.Plot(label="Per-class metric")
        ds_delta_plot = gr.Plot(label="Per-class Δ A − B, sorted")
    ds_table = gr.Dataframe(label="Classes passing the filters (ΔPQ with its 95% interval; grey: not significant)",
                            interactive=False, max_height=420, elem_id="vw-ds-table")
    ds_export_button = gr.Button("Export these tables as CSV", size="sm")
    ds_export_files = gr.File(label="CSV", file_count="multiple", visible=False)
    gr.Markdown("### Class confusion of unmatched segments\nFor every false-positive segment: the ground-truth "
                "class it mostly covers. Reads every PNG of the chosen images.")
    confusion_button = gr.Button("Compute the confusion table")
    confusion_table = gr.Dataframe(label="FP segments by predicted class and the class they cover",
                                   interactive=False, max_height=420)
    confusion_file = gr.File(label="CSV", visible=False)

    pages = SharedResults()  # the same query gives the same page to every session

    def on_update(view_value, *values):
        chosen = query(*values)

        def page() -> dict:
            result = events.dataset_page(folder, view_value, chosen)
            return _rendered({ds_summary: result.summary, ds_summary_plot: result.summary_chart,
                              ds_metric_plot: result.metric_chart, ds_delta_plot: result.delta_chart,
                              ds_table: result.table, ds_intervals: result.intervals, ds_status: result.status})

        return pages.get(chosen.key(view_value), page)

    # Every session opening the tab first asks for the default page: have it ready before the first one does.
    defaults = [component.value for component in inputs]
    threading.Thread(target=on_update, args=defaults, daemon=True, name="dataset-default-page").start()

    def on_confusion(view_value, chosen, scope, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for a bar)
        table, path = events.confusion(folder, view_value, events.chosen_models(folder, chosen), scope,
                                       progress=lambda fraction, text: progress(fraction, desc=text))
        return table, gr.File(path, visible=True)

    gr.on([ds_button.click, dataset_tab.select], on_update, inputs,
          [ds_summary, ds_intervals, ds_summary_plot, ds_metric_plot, ds_delta_plot, ds_table, ds_status],
          api_name="dataset", postprocess=False)  # _rendered did it, once for every session
    ds_export_button.click(
        lambda view_value, *values: gr.File(events.export_dataset(folder, view_value, query(*values)),
                                            visible=True), inputs, [ds_export_files], api_name="export_dataset")
    confusion_button.click(on_confusion, [inputs[0], inputs[1], inputs[3]], [confusion_table, confusion_file],
                           api_name="confusion")


def _errors_view(folder: FolderIndex, errors_tab: gr.Tab, inputs: list, query, images: ImagesTab,
                 tabs: gr.Tabs) -> None:
    models = folder.panoptic_models  # the error types are panopticapi's matching's
    classes = [("all classes", -1)] + [(f"{c.name} ({c.id})", c.id) for c in folder.classes]
    with gr.Row():
        group = gr.Radio([("all", "All"), ("things", "Things"), ("stuff", "Stuff")], value="All",
                         label="Per model: classes")
        errors_button = gr.Button("Update errors", variant="primary", elem_id="vw-errors-update")
    note = gr.Markdown(elem_id="vw-errors-note")
    summary = gr.Dataframe(label="Per model: errors by type and ΔPQ if fixed (click a cell to list its images)",
                           interactive=False, elem_id="vw-errors-summary")
    summary_plot = gr.Plot(label="Errors by type and ΔPQ if fixed")
    class_table = gr.Dataframe(label="Per class, A and B side by side (click a cell to list its images)",
                               interactive=False, max_height=420, elem_id="vw-errors-classes")
    class_plot = gr.Plot(label="Errors by type per class")
    gr.Markdown("### Where a type of error costs the most")
    with gr.Row():
        list_model = gr.Dropdown(models, value=(models + [None])[0], label="Model")
        list_fix = gr.Dropdown([(analysis.FIX_LABELS[f], f) for f in analysis.FIX_CHOICES], value="missed",
                               label="Error type", elem_id="vw-error-type")
        list_class = gr.Dropdown(classes, value=-1, label="Class")
        list_top = gr.Number(20, label="Top N (0 = all)", precision=0, minimum=0)
        list_button = gr.Button("List images", elem_id="vw-error-list")
    list_status = gr.Markdown(elem_id="vw-error-status")
    listed = gr.Dataframe(pd.DataFrame(columns=["image", "model", "error type", "class", "errors", "PQ",
                                                "PQ if fixed", "ΔPQ if fixed"]),
                          label="Images (click one to open it on the Images tab)", interactive=False,
                          max_height=420, elem_id="vw-error-images")
    instances = _instance_errors_section(folder, inputs[0], query, inputs[1:])

    def choice(model, fix, class_id) -> events.ErrorChoice:
        return events.ErrorChoice(model, fix, None if class_id in (None, -1) else int(class_id))

    def on_errors(view_value, group_value, *values):
        page = events.errors_page(folder, view_value, query(*values), group_value)
        return {note: page.note, summary: page.summary, summary_plot: page.summary_chart,
                class_table: page.classes, class_plot: page.class_chart, instances.note: page.instance_note,
                instances.table: page.instances, instances.chart: page.instance_chart}

    def listing(view_value, picked: events.ErrorChoice, top, values) -> dict:
        result = events.error_images(folder, view_value, query(*values), picked, top)
        return {listed: result.table, list_status: result.status, list_model: picked.model,
                list_fix: picked.fix, list_class: -1 if picked.class_id is None else picked.class_id}

    def on_list(view_value, model, fix, class_id, top, *values):
        return listing(view_value, choice(model, fix, class_id), top, values)

    def on_cell(table: str):
        def handler(view_value, top, evt: gr.SelectData, *values):
            picked = events.error_choice(folder, table, evt.row_value, evt.index[1] if evt.index else None)
            return listing(view_value, picked, top, values) if picked else {}
        return handler

    def on_open(listed_value, evt: gr.SelectData, *controls):
        names = [] if listed_value is None or not len(listed_value) else listed_value["image"].tolist()
        name = evt.row_value[0] if evt.row_value else None
        result = events.open_listed(folder, names, name, "images listed by the Errors view",
                                    events.display(folder, *controls))
        return {**images.page_and_list(result), tabs: gr.Tabs(selected="images")}

    view, dataset_inputs = inputs[0], inputs[1:]
    outputs = [note, summary, summary_plot, class_table, class_plot, instances.note, instances.table, instances.chart]
    gr.on([errors_button.click, errors_tab.select], _for_user(on_errors), [view, group, *dataset_inputs], outputs,
          api_name="errors")
    list_outputs = [listed, list_status, list_model, list_fix, list_class]
    list_button.click(_for_user(on_list), [view, list_model, list_fix, list_class, list_top, *dataset_inputs],
                      list_outputs, api_name="error_images")
    summary.select(_for_user(on_cell("summary")), [view, list_top, *dataset_inputs], list_outputs,
                   api_name="error_cell")
    class_table.select(_for_user(on_cell("classes")), [view, list_top, *dataset_inputs], list_outputs,
                       api_name="error_class_cell")
    listed.select(_for_user(on_open), [listed, *images.controls], [*images.outputs, tabs],
                  api_name="open_error_image")


def _instance_errors_section(folder: FolderIndex, view, query, dataset_inputs) -> SimpleNamespace:
    """The Errors view's part on models scored as instances: TIDE error types and calibration per model (filled by
    the view's handler), and A against B in mask AP with bootstrap intervals (on request: it reads the COCO files)."""
    gr.Markdown("### Instances: TIDE error types, calibration and A against B in mask AP")
    section = SimpleNamespace(note=gr.Markdown(elem_id="vw-tide-note"),
                              table=gr.Dataframe(label="Per model scored as instances (hotcoco)", interactive=False,
                                                 elem_id="vw-tide"),
                              chart=gr.Plot(label="ΔAP@0.5 if fixed, per TIDE error type"))
    compare_button = gr.Button("Compare A and B in mask AP (bootstrap intervals)", elem_id="vw-ap-compare")
    compare_status = gr.Markdown(elem_id="vw-ap-compare-status")
    compared = gr.Dataframe(label="Mask AP, A − B", interactive=False, elem_id="vw-ap-compare-table")

    def on_compare(view_value, *values):
        table, status = events.instance_comparison(folder, query(*values))
        return {compared: table, compare_status: status}

    compare_button.click(_for_user(on_compare), [view, *dataset_inputs], [compared, compare_status],
                         api_name="compare_ap")
    return section


def _thresholds_view(folder: FolderIndex, thresholds_tab: gr.Tab, ds_models) -> None:
    with gr.Row():
        metric = gr.Radio([("PQ", "pq"), ("SQ", "sq"), ("RQ", "rq")], value="pq", label="Metric")
        group = gr.Radio([("all", "All"), ("things", "Things"), ("stuff", "Stuff")], value="All", label="Classes")
    status = gr.Markdown(elem_id="vw-sweep-status")
    chart = gr.Plot(label="Metric against the score threshold (★ default setting)")
    table = gr.Dataframe(label="Every setting of the sweep", interactive=False, max_height=420)

    def on_sweep(chosen, metric_value, group_value):
        page = events.sweep_page(folder, events.chosen_models(folder, chosen), metric_value, group_value)
        return {chart: page.chart, table: page.table, status: page.status}

    gr.on([thresholds_tab.select, metric.change, group.change, ds_models.change], on_sweep,
          [ds_models, metric, group], [chart, table, status], api_name="sweep")


def _confusion_view(folder: FolderIndex, confusion_tab: gr.Tab, inputs: list, images: ImagesTab, tabs: gr.Tabs) -> None:
    models = events.semantic_models(folder)
    first = next((m for m in models if folder.model_tasks[m] == "semantic"), (models + [None])[0])
    view, scope = inputs[0], inputs[3]
    with gr.Row():
        model = gr.Dropdown(models, value=first, label="Model (semantic, or panoptic: its class map)")
        max_classes = gr.Number(20, label="Classes shown (most ground-truth pixels)", precision=0, minimum=2)
        show_button = gr.Button("Show the confusion matrix", variant="primary", elem_id="vw-confusion-show")
    status = gr.Markdown(elem_id="vw-confusion-status")
    # No label drawn over the picture: it would hide the heatmap's title; the status line says what a click does.
    chart = gr.Image(label="Confusion matrix (seaborn heatmap)", show_label=False, type="numpy", format="png",
                     interactive=False, elem_id="vw-confusion-heatmap")
    shown = gr.State(None)  # the heatmap's model, scope, grid and picker options, for clicks on the picture
    top = gr.Dataframe(label="The largest confusions (click one to list the images where it happens most)",
                       interactive=False, max_height=360, elem_id="vw-confusion-top")
    with gr.Row():
        picked = gr.Dropdown([], label="Confusion", elem_id="vw-confusion-pick")
        top_n = gr.Number(20, label="Top N (0 = all)", precision=0, minimum=0)
        list_button = gr.Button("List images", elem_id="vw-confusion-list")
    list_status = gr.Markdown(elem_id="vw-confusion-images-status")
    listed = gr.Dataframe(label="Images (click one to open it on the Images tab)", interactive=False,
                          max_height=420, elem_id="vw-confusion-images")

    def on_show(view_value, model_value, scope_value, classes):
        page = events.confusion_page(folder, view_value, model_value, scope_value, classes)
        return {chart: page.chart, top: page.top, status: page.status,
                shown: (model_value, scope_value, page.grid, page.choices),
                picked: gr.Dropdown(choices=page.choices, value=page.choices[0][1] if page.choices else None)}

    def listing(view_value, model_value, choice, scope_value, n) -> dict:
        result = events.confusion_images(folder, view_value, model_value, choice, scope_value, n)
        return {listed: result.table, list_status: result.status, picked: choice}

    def on_top_click(view_value, model_value, scope_value, n, evt: gr.SelectData):
        choice = events.confusion_choice(folder, view_value, model_value, scope_value,
                                         evt.index[0] if evt.index else None)
        return listing(view_value, model_value, choice, scope_value, n) if choice else {}

    def on_heatmap_click(view_value, n, shown_value, evt: gr.SelectData):
        # The heatmap's own model and scope: the dropdowns may have changed since it was drawn.
        model_value, scope_value, grid, choices = shown_value or (None, None, None, [])
        choice = events.heatmap_choice(folder, grid, *evt.index)
        if choice not in [value for _, value in choices]:  # the picker offers the largest confusions only
            gt_class, predicted = (int(v) for v in choice.split(":"))
            choices = [*choices, events.confusion_option(folder, gt_class, predicted)]
        result = listing(view_value, model_value, choice, scope_value, n)
        return {**result, picked: gr.Dropdown(choices=choices, value=choice), model: model_value}

    def on_open(listed_value, evt: gr.SelectData, *controls):
        names = [] if listed_value is None or not len(listed_value) else listed_value["image"].tolist()
        result = events.open_listed(folder, names, evt.row_value[0] if evt.row_value else None,
                                    "images listed by the confusion view", events.display(folder, *controls))
        return {**images.page_and_list(result), tabs: gr.Tabs(selected="images")}

    gr.on([show_button.click, confusion_tab.select], _for_user(on_show), [view, model, scope, max_classes],
          [chart, top, status, shown, picked], api_name="confusion_matrix")
    chart.select(_for_user(on_heatmap_click), [view, top_n, shown], [listed, list_status, picked, model],
                 api_name="confusion_heatmap_cell")
    top.select(_for_user(on_top_click), [view, model, scope, top_n], [listed, list_status, picked],
               api_name="confusion_cell")
    list_button.click(_for_user(listing), [view, model, picked, scope, top_n], [listed, list_status, picked],
                      api_name="confusion_images")
    listed.select(_for_user(on_open), [listed, *images.controls], [*images.outputs, tabs],
                  api_name="open_confusion_image")


# -------------------------------------------------------------------------------------------------- live tab

def _live_tab(folder: FolderIndex) -> None:
    live_models = live.available_models(folder)
    result = gr.State(None, time_to_live=LIVE_RESULT_SECONDS)
    gr.Markdown("Run a model of this folder on an image of your own. Only models whose checkpoint is on this "
                "machine can run. " + live.unavailable_note(folder))
    with gr.Row():
        # A file path, decoded by the handler: it checks the size from the header first (live.load_photo).
        photo = gr.Image(type="filepath", image_mode=None, label="Image", height=260, elem_id="vw-live-image")
        with gr.Column():
            chosen = gr.CheckboxGroup(live_models, value=live_models[:1], label="Models available locally")
            run_button = gr.Button("Run", variant="primary", interactive=bool(live_models))
            status = gr.Markdown()
            mode = gr.Radio([("Labels", "labels"), ("Overlay on photo", "overlay")], value="overlay",
                            label="View")
            opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Overlay opacity")
            borders = gr.Checkbox(True, label="Instance borders")
    panels = gr.HTML("", js_on_load=PANELS_JS, elem_id="vw-live-panels")
    inspector = gr.Dataframe(label="Pixel inspector (click a panel)", value=NO_PIXEL, interactive=False)

    run_button.click(_for_user(functools.partial(events.live_run, folder)), [photo, chosen], [result, status],
                     api_name="live_run") \
        .then(functools.partial(events.live_panels, folder), [result, mode, opacity, borders], [panels],
              api_name="live_render")
    gr.on([mode.change, opacity.input, borders.change], None, [mode, opacity, borders], None,
          js=RESTYLE_JS.format(selector="#vw-live-panels"), api_name="live_style")
    def on_inspect_click(value, evt: gr.EventData):
        return events.live_inspect(folder, value, evt.x, evt.y)

    panels.click(_for_user(on_inspect_click), [result], [inspector], api_name="live_inspect_click")


# ------------------------------------------------------------------------------------------------- serving

def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, **kwargs):
    """Starts the server: loopback unless told otherwise, never a public share link. The folder's files are not
    served as files at all (pictures are embedded in the page), so nothing outside it can be reached."""
    demo.queue(default_concurrency_limit=CONCURRENT_EVENTS)
    return demo.launch(server_name=host, server_port=port, share=False, max_file_size=UPLOAD_LIMIT,
                       css_paths=[ASSETS / "app.css"],
                       js=(ASSETS / "app.js").read_text(), show_error=True, footer_links=["api"], **kwargs)


def host_warning(host: str) -> str | None:
    """What to tell someone who makes the server answer other machines: it has no login."""
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        return None
    return (f"warning: --host {host} serves this folder to every machine that can reach this one, without a login "
            "(its pictures, metrics and model names, and the live tab runs its models); use --host 127.0.0.1 "
            "(the default) to keep it on this machine")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Compare segmentation models on an output folder of "
                                                 "predict_dump.py in the browser.")
    parser.add_argument("folder", nargs="?", help="output folder written by predict_dump.py")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: loopback only)")
    parser.add_argument("--port", type=int, default=7860)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        folder = load_folder(Path(args.folder) if args.folder else default_folder())
    except (NoFolderError, FolderError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f"opened {folder.root}: {folder.n_images} images, models {', '.join(folder.models) or 'none'}"
          + (f"; {len(folder.problems)} problem(s), listed on the page" if folder.problems else ""))
    warning = host_warning(args.host)
    if warning:
        print(warning, file=sys.stderr)
    # Unreadable annotation JSONs are not looked for while opening (it would take seconds): look now, aside.
    threading.Thread(target=check_annotations, args=(folder,), daemon=True, name="check-annotations").start()
    launch(build_app(folder), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
