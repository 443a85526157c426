"""The model comparison web app: opens an output folder of predict_dump.py and serves it on 127.0.0.1.

    python gradio_app.py [OUTPUT_DIR] [--host 127.0.0.1] [--port 7860]

This file is the command line, the page layout and the wiring of events; what the events do lives in `viewer/`
as plain functions. Per-user state (the image list, the position in it, the live tab's last result) is gr.State,
so two browser sessions never share it; the opened folder is read-only and shared.
"""

from __future__ import annotations

import argparse
import sys
import threading
from pathlib import Path

import gradio as gr
import numpy as np
import pandas as pd

from dump.folder import GT, FolderError
from viewer import dataset, filters, live, navigation, plots, tables
from viewer.index import FolderIndex, check_annotations, load_folder, summary_markdown
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

ASSETS = Path(__file__).resolve().parent / "viewer" / "assets"
NO_FOLDER = (
    "No output folder given, and the embedded demo cannot be built ({reason}). Create a folder with\n"
    "    python predict_dump.py --data DIR --model NAME=SOURCE --out DIR\n"
    "then open it with\n"
    "    python gradio_app.py DIR"
)
NO_PIXEL = pd.DataFrame(columns=list(INSPECTOR_COLUMNS))  # the inspector before a click
CONCURRENT_EVENTS = 4  # handlers are numpy and PNG encoding; more threads than this only queue on 2-4 cores


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


def build_app(index: FolderIndex) -> gr.Blocks:
    models = index.models
    class_choices = [(f"{c['name']} ({c['id']})", c["id"]) for c in index.classes]
    source_choices = [("ground truth", GT)] + [(m, m) for m in models]
    model_a = models[0] if models else None
    model_b = models[1] if len(models) > 1 else model_a
    model_colors = plots.model_colors(models)
    live_models = live.available_models(index)

    # ------------------------------------------------------------------------------------------ handlers
    def options(mode, opacity, borders, error_maps, pair_map, a, b) -> DisplayOptions:
        return DisplayOptions(mode=mode, opacity=float(opacity), borders=bool(borders), error_maps=bool(error_maps),
                              pair=(a, b) if pair_map and a and b and a != b else None)

    def chosen_models(chosen) -> list[str]:
        """The folder's models among those ticked, in the folder's order (anything else is ignored)."""
        return [m for m in models if m in (chosen or [])]

    def show(view, shown, mode, opacity, borders, error_maps, pair_map, a, b):
        """Everything that depends on the current image."""
        shown = chosen_models(shown)
        pos = view["current"]
        if pos is None:
            return (view, "", navigation.describe(index, view), "<p>No image in this list.</p>", NO_PIXEL,
                    tables.image_metrics_table(index, 0, []), None, None, None)
        opts = options(mode, opacity, borders, error_maps, pair_map, a, b)
        panels, photo = image_panels(index, pos, shown, opts)
        entry = index.manifest["images"][pos]
        html = panels_html(panels, photo, legend_classes(index, pos, shown), index.images[pos], opts,
                           size=(entry.get("height"), entry.get("width")))
        metrics = index_tables(pos, shown)
        return (view, index.images[pos], navigation.describe(index, view), html, NO_PIXEL, *metrics)

    def index_tables(pos, shown):
        metrics = tables.image_metrics_table(index, pos, shown)
        class_table = tables.image_class_table(index, pos, shown)
        return (tables.rounded(metrics), tables.style_differences(tables.pairwise_table(metrics)),
                tables.rounded(class_table), tables.style_differences(tables.class_difference_table(class_table,
                                                                                                       shown)))

    def list_outputs(view, shown):
        table = view_table(view, shown)
        label = view["label"]
        status = f"**{len(view['positions'])} images** · {label}"
        if view["left_out"]:
            status += f" · {view['left_out']} left out (metric undefined or missing for A or B)"
        return table, status

    def view_table(view, shown):
        ranking = view["ranking"]
        if ranking:
            return tables.rounded(filters.rank_images(index, view["filtered"], **ranking).table)
        return tables.rounded(tables.image_list_table(index, view["positions"], chosen_models(shown)))

    def on_load(request: gr.Request, *controls):
        wanted = request.query_params.get("image") if request is not None else None
        view = navigation.new_view(range(index.n_images))
        pos = index.position(wanted)
        if pos is not None:
            view = navigation.go_to(view, pos)
        note = f"Image {wanted!r} from the link is not in this folder." if wanted and pos is None else ""
        table, status = list_outputs(view, controls[0])
        return (*show(view, *controls), table, status + (f" · {note}" if note else ""), folder_label(),
                summary_markdown(index))

    def folder_label():
        return gr.Accordion(label="Folder" + (f" · {len(index.problems)} problem(s)" if index.problems else ""))

    def apply_filter(view, classes, match, source, min_classes, max_classes, min_instances, max_instances,
                     *controls):
        # The number boxes show 0 when empty: a minimum of 0 and a maximum of 0 both mean "no limit".
        image_filter = filters.ImageFilter(tuple(int(c) for c in classes or ()), match, source,
                                           _limit(min_classes) or None, _limit(max_classes) or None,
                                           _limit(min_instances) or None, _limit(max_instances) or None)
        positions = filters.filter_images(index, image_filter)
        view = navigation.new_view(positions, filters.describe(image_filter, index.class_label))
        table, status = list_outputs(view, controls[0])
        return (*show(view, *controls), table, status)

    def clear_filter(view, *controls):
        view = navigation.new_view(range(index.n_images))
        table, status = list_outputs(view, controls[0])
        return (*show(view, *controls), table, status)

    def rank(view, a, b, order, metric, top_n, *controls):
        if not a or not b or a == b:
            raise gr.Error("Choose two different models A and B to rank by their difference.")
        ranking = {"model_a": a, "model_b": b, "order": order, "metric": metric, "top_n": _limit(top_n) or None}
        result = filters.rank_images(index, view["filtered"], **ranking)
        label = f"ranked: {filters.ORDERS[order]} (A = {a}, B = {b}, Δ{metric.upper()})"
        new = navigation.new_view(result.positions, label, filtered=view["filtered"], ranking=ranking,
                                  left_out=result.left_out)
        table, status = list_outputs(new, controls[0])
        return (*show(new, *controls), table, status)

    def step(delta):
        def handler(view, *controls):
            return show(navigation.step(view, delta), *controls)
        return handler

    def jump(view, text, *controls):
        pos = index.position(text)
        if pos is None:
            raise gr.Error(f"No image {text!r} in this folder: give its index, its val_XXXX name or its key.")
        return show(navigation.go_to(view, pos), *controls)

    def select_row(view, evt: gr.SelectData, *controls):
        pos = index.position(evt.row_value[0]) if evt.row_value else None
        return show(view if pos is None else navigation.go_to(view, pos), *controls)

    def inspect(view, shown, x, y):
        if view["current"] is None or x is None or y is None:
            return NO_PIXEL
        try:
            return inspect_pixel(index, view["current"], chosen_models(shown), int(x), int(y))
        except IndexError as e:
            raise gr.Error(str(e)) from None

    def inspect_click(view, shown, evt: gr.EventData):
        x, y = int(evt.x), int(evt.y)
        return x, y, inspect(view, shown, x, y)

    def export_list(view, shown):
        return gr.File(tables.write_csv(view_table(view, shown), f"images_{view['label']}"), visible=True)

    def export_image(view, shown, x, y):
        if view["current"] is None:
            return None
        shown = chosen_models(shown)
        pos, name = view["current"], index.images[view["current"]]
        metrics = tables.image_metrics_table(index, pos, shown)
        class_table = tables.image_class_table(index, pos, shown)
        paths = [tables.write_csv(metrics, f"{name}_metrics"),
                 tables.write_csv(tables.pairwise_table(metrics), f"{name}_pairwise"),
                 tables.write_csv(class_table, f"{name}_classes"),
                 tables.write_csv(tables.class_difference_table(class_table, shown), f"{name}_class_differences")]
        pixel = inspect(view, shown, x, y) if _limit(x) is not None and _limit(y) is not None else None
        if pixel is not None:
            paths.append(tables.write_csv(pixel, f"{name}_pixel_{int(x)}_{int(y)}"))
        return gr.File(paths, visible=True)

    # dataset tab
    def dataset_tables(view, chosen, metric, scope, kind, a, b, class_filter, value):
        """Per-class metrics of the chosen models, the classes passing the filter, and the summary."""
        chosen = chosen_models(chosen)
        positions = view["positions"] if scope == "list" else None
        per_class = dataset.class_metrics(index, chosen, positions)
        value = _number(value)
        compare = dataset.compare_classes(per_class, chosen, metric, a, b,
                                          min_delta=value if class_filter == "a_better" else None,
                                          threshold_side=class_filter if class_filter in ("above", "below") else None,
                                          threshold=value, kind=kind)
        return per_class, compare, dataset.summary_table(index, chosen, positions)

    def update_dataset(view, chosen, metric, scope, kind, a, b, class_filter, value):
        per_class, compare, summary = dataset_tables(view, chosen, metric, scope, kind, a, b, class_filter, value)
        delta_column = next((c for c in compare.columns if str(c).startswith("Δ")), None)
        scope_text = f"{len(view['positions'])} images of the current list" if scope == "list" else \
            f"all {index.n_images} images"
        status = (f"{len(compare)} of {per_class['class id'].nunique()} active classes pass the filters · "
                  f"counts summed over {scope_text}")
        return (tables.rounded(summary), plots.summary_chart(summary, model_colors),
                plots.class_metric_chart(compare, chosen_models(chosen), metric, model_colors),
                plots.delta_chart(compare, delta_column),
                tables.style_differences(compare) if delta_column else tables.rounded(compare), status)

    def export_dataset(view, chosen, metric, scope, kind, a, b, class_filter, value):
        per_class, compare, summary = dataset_tables(view, chosen, metric, scope, kind, a, b, class_filter, value)
        return gr.File([tables.write_csv(compare, f"classes_{metric}_compared"),
                        tables.write_csv(per_class, "classes_per_model"), tables.write_csv(summary, "summary")],
                       visible=True)

    def confusion(view, chosen, scope, progress=gr.Progress()):  # noqa: B008 (how Gradio asks for a bar)
        positions = view["positions"] if scope == "list" else None
        table = dataset.confusion_table(index, chosen_models(chosen), positions, progress=lambda f, text: progress(f, desc=text))
        return tables.rounded(table), gr.File(tables.write_csv(table, "unmatched_segments_confusion"), visible=True)

    # live tab
    def live_run(photo, chosen):
        if photo is None:
            raise gr.Error("Upload an image first.")
        if not chosen:
            raise gr.Error("Choose at least one model whose checkpoint is available locally.")
        result = live.run_models(index, chosen, photo)
        timing = ", ".join(f"{m}: {s:.1f} s" for m, s in result.seconds.items())
        return result, f"Ran {timing}."

    def live_render(result, mode, opacity, borders):
        if result is None:
            return "<p>Upload an image and run a model.</p>"
        opts = DisplayOptions(mode=mode, opacity=float(opacity), borders=bool(borders))
        panels = build_panels(None, result.labels, index.colors, opts)
        present = [s["category_id"] for labels in result.labels.values() if not isinstance(labels, str)
                   for s in labels.segments.values()]
        return panels_html(panels, png_bytes(result.photo), legend(index, present), f"live-{id(result)}", opts,
                           size=result.photo.shape[:2])

    def live_inspect(result, evt: gr.EventData):
        if result is None:
            return NO_PIXEL
        try:
            return inspect_maps(None, result.labels, int(evt.x), int(evt.y), index.class_label)
        except IndexError as e:
            raise gr.Error(str(e)) from None

    # ------------------------------------------------------------------------------------------ layout
    with gr.Blocks(title="EoMT model comparison", analytics_enabled=False, fill_width=True,
                   delete_cache=(3600, 3600)) as demo:
        view = gr.State(navigation.new_view(range(index.n_images)))  # per session; the load event sets it
        live_result = gr.State(None)
        gr.Markdown("## EoMT model comparison")
        with gr.Accordion("Folder" + (f" · {len(index.problems)} problem(s)" if index.problems else ""),
                          open=bool(index.problems)) as folder_box:
            folder_summary = gr.Markdown(summary_markdown(index), elem_id="vw-folder")
        with gr.Tabs():
            with gr.Tab("Images", id="images"):
                with gr.Row(equal_height=False):
                    with gr.Column(scale=1, min_width=320):
                        with gr.Accordion("Filter images", open=True):
                            classes = gr.Dropdown(class_choices, multiselect=True, label="Classes",
                                                  elem_id="vw-classes")
                            match = gr.Radio([("all of them", "all"), ("any of them", "any")], value="all",
                                             label="Image contains")
                            source = gr.Dropdown(source_choices, value=GT, label="Look in")
                            with gr.Row():
                                min_classes = gr.Number(None, label="Min distinct classes", precision=0, minimum=0)
                                max_classes = gr.Number(None, label="Max distinct classes (0: no limit)", precision=0, minimum=0)
                            with gr.Row():
                                min_instances = gr.Number(None, label="Min instances", precision=0, minimum=0)
                                max_instances = gr.Number(None, label="Max instances (0: no limit)", precision=0, minimum=0)
                            gr.Markdown("Instances: segments of the chosen classes (of all classes if none is "
                                        "chosen); a stuff class counts once.")
                            with gr.Row():
                                filter_button = gr.Button("Apply filter", variant="primary", elem_id="vw-filter")
                                clear_button = gr.Button("All images")
                        with gr.Accordion("Rank by signed difference", open=True):
                            with gr.Row():
                                rank_a = gr.Dropdown(models, value=model_a, label="Model A")
                                rank_b = gr.Dropdown(models, value=model_b, label="Model B")
                            order = gr.Radio([(v, k) for k, v in filters.ORDERS.items()], value="a_better",
                                             label="Order")
                            with gr.Row():
                                metric = gr.Radio([("PQ", "pq"), ("SQ", "sq"), ("RQ", "rq")], value="pq",
                                                  label="Per-image metric")
                                top_n = gr.Number(20, label="Top N (0 = all)", precision=0, minimum=0)
                            rank_button = gr.Button("Rank the filtered images", elem_id="vw-rank")
                        list_status = gr.Markdown(elem_id="vw-list-status")
                        image_list = gr.Dataframe(label="Images (click a row to open it)", interactive=False,
                                                  max_height=420, elem_id="vw-image-list")
                        export_list_button = gr.Button("Export this list as CSV", size="sm")
                        export_list_file = gr.File(label="CSV", visible=False)
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
                            mode = gr.Radio([("Labels", "labels"), ("Overlay on photo", "overlay")],
                                            value="labels", label="View", elem_id="vw-mode")
                            opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Overlay opacity",
                                                elem_id="vw-opacity")
                        with gr.Row():
                            borders = gr.Checkbox(True, label="Instance borders")
                            error_maps = gr.Checkbox(False, label="Error maps per model", elem_id="vw-errors")
                            pair_map = gr.Checkbox(True, label="A vs B map (models of the ranking)")
                        panels = gr.HTML("", js_on_load=(ASSETS / "panels.js").read_text(), elem_id="vw-panels")
                        with gr.Row(equal_height=True):
                            pixel_x = gr.Number(None, label="Pixel x", precision=0, minimum=0, elem_id="vw-x")
                            pixel_y = gr.Number(None, label="Pixel y", precision=0, minimum=0, elem_id="vw-y")
                            inspect_button = gr.Button("Inspect pixel", scale=0)
                        inspector = gr.Dataframe(label="Pixel inspector (click a panel): every source at that "
                                                 "pixel, its segment and what matching made of it",
                                                 value=NO_PIXEL, interactive=False, elem_id="vw-inspector")
                        image_metrics = gr.Dataframe(label="This image, per model: PQ/SQ/RQ (mean over its "
                                                     "active classes) beside TP/FP/FN", interactive=False)
                        pair_table = gr.Dataframe(label="Every pair of models, A − B (green: A better, red: worse)",
                                                  interactive=False)
                        class_table = gr.Dataframe(label="This image, per class and model", interactive=False,
                                                   max_height=360)
                        class_diff = gr.Dataframe(label="This image, per-class ΔPQ for every pair", interactive=False,
                                                  max_height=360)
                        export_image_button = gr.Button("Export this image's tables as CSV", size="sm")
                        export_image_files = gr.File(label="CSV", file_count="multiple", visible=False)
            with gr.Tab("Dataset", id="dataset") as dataset_tab:
                with gr.Row():
                    ds_models = gr.CheckboxGroup(models, value=models, label="Models")
                    ds_metric = gr.Radio(["PQ", "SQ", "RQ"], value="PQ", label="Metric")
                    ds_scope = gr.Radio([("all images", "all"), ("the current image list", "list")], value="all",
                                        label="Images")
                    ds_kind = gr.Radio([("all", "all"), ("things", "thing"), ("stuff", "stuff")], value="all",
                                       label="Classes")
                with gr.Row():
                    ds_a = gr.Dropdown(models, value=model_a, label="A")
                    ds_b = gr.Dropdown(models, value=model_b, label="B")
                    ds_filter = gr.Radio([("none", "none"), ("A better than B by at least X", "a_better"),
                                          ("all models above X", "above"), ("all models below X", "below")],
                                         value="none", label="Class filter", scale=2)
                    ds_value = gr.Number(0.1, label="X", step=0.05)
                ds_button = gr.Button("Update", variant="primary")
                ds_status = gr.Markdown()
                ds_summary = gr.Dataframe(label="Things / stuff summary (from counts summed over the images)",
                                          interactive=False)
                ds_summary_plot = gr.Plot(label="PQ: all, things, stuff")
                with gr.Row():
                    ds_metric_plot = gr.Plot(label="Per-class metric")
                    ds_delta_plot = gr.Plot(label="Per-class ΔPQ A − B")
                ds_table = gr.Dataframe(label="Classes passing the filters", interactive=False, max_height=420)
                ds_export_button = gr.Button("Export these tables as CSV", size="sm")
                ds_export_files = gr.File(label="CSV", file_count="multiple", visible=False)
                gr.Markdown("### Class confusion of unmatched segments\nFor every false-positive segment: the "
                            "ground-truth class it mostly covers. Reads every PNG of the chosen images.")
                confusion_button = gr.Button("Compute the confusion table")
                confusion_table = gr.Dataframe(label="FP segments by predicted class and the class they cover",
                                               interactive=False, max_height=420)
                confusion_file = gr.File(label="CSV", visible=False)
            with gr.Tab("Live", id="live"):
                gr.Markdown("Run a model of this folder on an image of your own. Only models whose checkpoint "
                            "is on this machine can run. " + live.unavailable_note(index))
                with gr.Row():
                    live_image = gr.Image(type="numpy", label="Image", image_mode="RGB", height=260,
                                          elem_id="vw-live-image")
                    with gr.Column():
                        live_models_box = gr.CheckboxGroup(live_models, value=live_models[:1],
                                                           label="Models available locally")
                        live_button = gr.Button("Run", variant="primary", interactive=bool(live_models))
                        live_status = gr.Markdown()
                        live_mode = gr.Radio([("Labels", "labels"), ("Overlay on photo", "overlay")],
                                             value="overlay", label="View")
                        live_opacity = gr.Slider(0, 1, value=0.6, step=0.05, label="Overlay opacity")
                        live_borders = gr.Checkbox(True, label="Instance borders")
                live_panels = gr.HTML("", js_on_load=(ASSETS / "panels.js").read_text(), elem_id="vw-live-panels")
                live_inspector = gr.Dataframe(label="Pixel inspector (click a panel)", value=NO_PIXEL,
                                              interactive=False)

        # -------------------------------------------------------------------------------------- wiring
        controls = [shown_models, mode, opacity, borders, error_maps, pair_map, rank_a, rank_b]
        shown_outputs = [view, image_name, position, panels, inspector, image_metrics, pair_table, class_table,
                         class_diff]
        list_outputs_ = [image_list, list_status]
        filter_inputs = [view, classes, match, source, min_classes, max_classes, min_instances, max_instances]

        # Problems found by the background check of the annotations appear on the next page load.
        demo.load(on_load, controls, shown_outputs + list_outputs_ + [folder_box, folder_summary], api_name="load")
        filter_button.click(apply_filter, filter_inputs + controls, shown_outputs + list_outputs_,
                            api_name="filter")
        clear_button.click(clear_filter, [view] + controls, shown_outputs + list_outputs_, api_name="clear_filter")
        rank_button.click(rank, [view, rank_a, rank_b, order, metric, top_n] + controls,
                          shown_outputs + list_outputs_, api_name="rank")
        prev_button.click(step(-1), [view] + controls, shown_outputs, api_name="previous")
        next_button.click(step(+1), [view] + controls, shown_outputs, api_name="next")
        jump_button.click(jump, [view, jump_box] + controls, shown_outputs, api_name="jump")
        jump_box.submit(jump, [view, jump_box] + controls, shown_outputs, api_name="jump_submit")
        image_list.select(select_row, [view] + controls, shown_outputs, api_name="select_row")
        # What is drawn changes: render again (same image, the panel script keeps the zoom).
        for control, name in ((shown_models, "models"), (error_maps, "error_maps"), (pair_map, "pair_map"),
                              (rank_a, "model_a"), (rank_b, "model_b")):
            control.change(show, [view] + controls, shown_outputs, api_name=f"render_{name}")
        # Only the styling changes: the browser restyles the panels, no round trip.
        mode.change(None, [mode], None, js="(m) => { window.vwStyle('#vw-panels', m, null, null); }",
                    api_name="style_mode")
        opacity.input(None, [opacity], None, js="(o) => { window.vwStyle('#vw-panels', null, o, null); }",
                      api_name="style_opacity")
        borders.change(None, [borders], None, js="(b) => { window.vwStyle('#vw-panels', null, null, b); }",
                       api_name="style_borders")
        image_name.change(None, [image_name], None, js="(name) => { window.vwSetImageInUrl(name); }",
                          api_name="sync_url")
        panels.click(inspect_click, [view, shown_models], [pixel_x, pixel_y, inspector], api_name="inspect_click")
        inspect_button.click(inspect, [view, shown_models, pixel_x, pixel_y], [inspector], api_name="inspect")
        export_list_button.click(export_list, [view, shown_models], [export_list_file], api_name="export_list")
        export_image_button.click(export_image, [view, shown_models, pixel_x, pixel_y], [export_image_files],
                                  api_name="export_image")

        dataset_inputs = [view, ds_models, ds_metric, ds_scope, ds_kind, ds_a, ds_b, ds_filter, ds_value]
        dataset_outputs = [ds_summary, ds_summary_plot, ds_metric_plot, ds_delta_plot, ds_table, ds_status]
        ds_button.click(update_dataset, dataset_inputs, dataset_outputs, api_name="dataset")
        dataset_tab.select(update_dataset, dataset_inputs, dataset_outputs, api_name="dataset_tab")
        ds_export_button.click(export_dataset, dataset_inputs, [ds_export_files], api_name="export_dataset")
        confusion_button.click(confusion, [view, ds_models, ds_scope], [confusion_table, confusion_file],
                               api_name="confusion")

        live_button.click(live_run, [live_image, live_models_box], [live_result, live_status], api_name="live_run") \
            .then(live_render, [live_result, live_mode, live_opacity, live_borders], [live_panels],
                  api_name="live_render")
        live_mode.change(None, [live_mode], None, js="(m) => { window.vwStyle('#vw-live-panels', m, null, null); }",
                         api_name="live_style_mode")
        live_opacity.input(None, [live_opacity], None,
                           js="(o) => { window.vwStyle('#vw-live-panels', null, o, null); }",
                           api_name="live_style_opacity")
        live_borders.change(None, [live_borders], None,
                            js="(b) => { window.vwStyle('#vw-live-panels', null, null, b); }",
                            api_name="live_style_borders")
        live_panels.click(live_inspect, [live_result], [live_inspector], api_name="live_inspect_click")
    return demo


def _limit(value) -> int | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else int(value)


def _number(value) -> float | None:
    return None if value is None or (isinstance(value, float) and np.isnan(value)) else float(value)


def launch(demo: gr.Blocks, host: str = "127.0.0.1", port: int | None = 7860, **kwargs):
    """Starts the server: loopback unless told otherwise, never a public share link. The folder's files are not
    served as files at all (pictures are embedded in the page), so nothing outside it can be reached."""
    demo.queue(default_concurrency_limit=CONCURRENT_EVENTS)
    return demo.launch(server_name=host, server_port=port, share=False, css_paths=[ASSETS / "app.css"],
                       js=(ASSETS / "app.js").read_text(), show_error=True, footer_links=["api"], **kwargs)


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
        root = Path(args.folder) if args.folder else default_folder()
        index = load_folder(root)
    except (NoFolderError, FolderError) as e:
        print(e, file=sys.stderr)
        return 2
    print(f"opened {index.root}: {index.n_images} images, models {', '.join(index.models) or 'none'}"
          + (f"; {len(index.problems)} problem(s), listed on the page" if index.problems else ""))
    # Unreadable annotation JSONs are not looked for while opening (it would take seconds): look now, aside.
    threading.Thread(target=check_annotations, args=(index,), daemon=True, name="check-annotations").start()
    launch(build_app(index), args.host, args.port)
    return 0


if __name__ == "__main__":
    sys.exit(main())
