"""The pictures of one image, rendered on demand from label maps, their HTML, and the pixel inspector.

Every class colour comes from the folder's class table through eomt.render, so a class looks the same in every
panel, every image and the legend. Pictures travel as lossless PNG data URIs inside one HTML block, which is what
lets the page's script zoom and pan all panels together and turn a click into image coordinates.
"""

from __future__ import annotations

import base64
import contextlib
import html
import io
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd
from PIL import Image

from dump.folder import GT, PRESENCE_SCORE, FolderError
from eomt.render import BORDER_COLOR, palette_array, palette_indices, segment_borders
from metrics import pq
from viewer import task_maps
from viewer.analysis import TYPE_COLORS
from viewer.labelmaps import LabelMap, LabelMapError, SegmentMatch, cached_match, load_label_map

# Error map codes and colours (Okabe-Ito, so red/green is not the only cue): a pixel takes the error type of the
# prediction's unmatched segment there, else of the ground truth's (docs/metrics.md, "Error types").
ERROR_CODE = {kind: 2 + k for k, kind in enumerate(TYPE_COLORS)}
ERROR_LEGEND = (("not scored (ground truth void)", (40, 40, 40)), ("matched (TP)", (0, 158, 115)),
                *((f"{kind} ({'FN' if kind == 'missed' else 'FP' if kind == 'background' else 'FN/FP'})", color)
                  for kind, color in TYPE_COLORS.items()),
                ("other pixel of a matched segment", (190, 190, 190)))
MATCHED, OTHER = 1, len(ERROR_LEGEND) - 1
PAIR_LEGEND = (("not scored (ground truth void)", (40, 40, 40)), ("both right", (190, 190, 190)),
               ("only A right", (0, 114, 178)), ("only B right", (204, 121, 167)), ("both wrong", (213, 94, 0)))


@dataclass(frozen=True)
class DisplayOptions:
    """What the panels show. Mode, opacity and borders only style the page (the browser composes the layers, so
    moving the slider costs no round trip); error maps and the pair map are extra panels."""

    mode: str = "labels"  # "labels": label maps as they are; "overlay": over the photo
    opacity: float = 0.6  # of the label layer in overlay mode
    borders: bool = True
    error_maps: bool = False
    pair: tuple[str, str] | None = None  # (A, B): add the A vs B map
    min_score: float = PRESENCE_SCORE  # instances scored below are not drawn
    iou: float = 0.5  # the IoU of the instance error maps' matching


@dataclass(frozen=True, eq=False)
class Layer:
    """A palette picture, what a PNG in palette mode stores: per pixel a row of `palette` (RGBA)."""

    indices: np.ndarray  # (H, W)
    palette: np.ndarray  # (N, 4) uint8

    @property
    def shape(self) -> tuple[int, int]:
        return self.indices.shape

    def rgba(self) -> np.ndarray:
        return self.palette[self.indices]


@dataclass(frozen=True)
class Panel:
    """One panel: the photo underneath (shown in overlay mode, always for the input), a colour layer
    (transparent on void) and a border layer (white on segment borders), or a note saying why not."""

    title: str
    kind: str  # "input" | "labels" | "codes"
    fill: Layer | None = None
    edges: Layer | None = None
    note: str = ""


@lru_cache(maxsize=64)
def _segment_index(labels: LabelMap) -> tuple[np.ndarray, np.ndarray]:
    """The map's sorted segment ids and, per pixel, 0 for void, k + 1 for ids[k], len(ids) + 1 for an id without
    an entry; remembered per (cached) label map, since every model's error map reads the ground truth's."""
    ids = np.array(sorted(labels.segments), dtype=np.int64)
    return ids, pq.segment_indices(labels.segment_map, ids, len(ids) + 1).reshape(labels.shape)


def _per_segment(labels: LabelMap, values: dict[int, int], fill: int, dtype=np.uint8) -> np.ndarray:
    """Per pixel, values[segment id] (fill for void, ids without an entry and ids not in `values`)."""
    ids, index = _segment_index(labels)
    return np.array([fill, *(values.get(int(i), fill) for i in ids), fill], dtype=dtype)[index]


def error_codes(gt: LabelMap, pred: LabelMap, match: SegmentMatch) -> np.ndarray:
    """Per pixel, an index into ERROR_LEGEND: 0 ground truth void; the FP type of the predicted segment there, else
    the FN type of the ground-truth segment; 1 where both are a matched pair; 8 elsewhere (a matched segment's
    pixel where the other side has another segment or void)."""
    partner = _per_segment(gt, {g: p for g, (status, p, _) in match.gt.items() if status == "TP"}, -1, np.int64)
    codes = np.where(partner == pred.segment_map, MATCHED, OTHER).astype(np.uint8)
    fn = _per_segment(gt, {g: ERROR_CODE[kind] for g, (kind, _) in match.gt_error.items()}, 0)
    fp = _per_segment(pred, {p: ERROR_CODE[kind] for p, (kind, _) in match.pred_error.items()}, 0)
    codes = np.where(fp > 0, fp, np.where(fn > 0, fn, codes))
    codes[gt.class_map < 0] = 0
    return codes


def pair_codes(gt_class: np.ndarray, a_class: np.ndarray, b_class: np.ndarray) -> np.ndarray:
    """Per pixel: 0 ground truth void, 1 both right, 2 only A right, 3 only B right, 4 both wrong."""
    a_right, b_right = a_class == gt_class, b_class == gt_class
    codes = np.select([a_right & b_right, a_right, b_right], [1, 2, 3], default=4).astype(np.uint8)
    codes[gt_class < 0] = 0
    return codes


def _with_alpha(palette: np.ndarray, void_transparent: bool) -> np.ndarray:
    alpha = np.full((len(palette), 1), 255, dtype=np.uint8)
    if void_transparent:
        alpha[-1] = 0
    return np.hstack([palette, alpha])


EDGE_PALETTE = np.array([[0, 0, 0, 0], [*BORDER_COLOR, 255]], dtype=np.uint8)


def labels_panel(title: str, labels: LabelMap, colors: np.ndarray) -> Panel:
    """A label map in the class palette of eomt.render (palette_array, the rows render_panoptic paints with);
    void is transparent, so the photo (or black, render_panoptic's void colour) shows through."""
    fill = Layer(palette_indices(labels.class_map, len(colors)), _with_alpha(palette_array(colors), True))
    edges = Layer(segment_borders(labels.segment_map).astype(np.uint8), EDGE_PALETTE)
    return Panel(title, "labels", fill, edges)


def codes_panel(title: str, codes: np.ndarray, legend) -> Panel:
    palette = np.array([color for _, color in legend], dtype=np.uint8)
    return Panel(title, "codes", Layer(codes, np.hstack([palette, np.full((len(palette), 1), 255, np.uint8)])))


def build_panels(gt: LabelMap | str | None, predictions: dict[str, LabelMap | str], colors: np.ndarray,
                 options: DisplayOptions, photo_note: str = "", error_panels: list[Panel] | None = None,
                 titles: dict[str, str] | None = None) -> list[Panel]:
    """Input, ground truth, each prediction, then (with ground truth) error maps and the A vs B map.

    `gt` and the predictions are label maps, or a string saying why there is none; `gt` None: no ground truth
    panel at all (the live tab). `error_panels`: the error maps when the caller made them (models of other tasks),
    else every prediction's panoptic error map. `titles`: a panel title per prediction (default its name)."""
    panels = [Panel("Input", "input", note=photo_note)]
    sources = ([("Ground truth", gt)] if gt is not None else []) + \
        [((titles or {}).get(name, name), labels) for name, labels in predictions.items()]
    for title, labels in sources:
        panels.append(labels_panel(title, labels, colors) if isinstance(labels, LabelMap)
                      else Panel(title, "labels", note=labels))
    if error_panels is not None and options.error_maps:
        panels.extend(error_panels)
    if not isinstance(gt, LabelMap):
        return panels
    if options.error_maps and error_panels is None:
        for name, labels in predictions.items():
            if isinstance(labels, LabelMap):
                panels.append(_errors_panel(name, gt, labels))
    if options.pair:
        a, b = options.pair
        if a != b and isinstance(predictions.get(a), LabelMap) and isinstance(predictions.get(b), LabelMap):
            codes = pair_codes(gt.class_map, predictions[a].class_map, predictions[b].class_map)
            panels.append(codes_panel(f"A = {a} vs B = {b}", codes, PAIR_LEGEND))
    return panels


def _errors_panel(name: str, gt: LabelMap, pred: LabelMap) -> Panel:
    try:
        return codes_panel(f"{name}: errors", error_codes(gt, pred, cached_match(gt, pred)), ERROR_LEGEND)
    except LabelMapError as e:  # a hand-made folder may hold a pair that cannot be matched
        return Panel(f"{name}: errors", "codes", note=str(e))


PNG_END = b"IEND\xaeB`\x82"  # the last chunk of every complete PNG, with its CRC


def photo_png(folder, pos: int) -> tuple[bytes | None, str]:
    """The input picture's PNG bytes as the dump wrote them (lossless already: sent as they are), or None and
    a note saying what is wrong."""
    path = folder.layout.input_png(folder.images[pos])
    try:
        data = path.read_bytes()
    except OSError as e:
        return None, f"input picture missing ({e.strerror}: {path.name})"
    if not data.startswith(b"\x89PNG\r\n\x1a\n"):
        return None, f"input picture {path.name} is not a PNG"
    if not data.endswith(PNG_END):  # a copy or a write cut short: the browser would show half a picture
        return None, f"input picture {path.name} is truncated"
    return data, ""


def _load_or_reason(folder, pos: int, source: str) -> LabelMap | str:
    try:
        return load_label_map(folder, pos, source)
    except LabelMapError as e:
        return str(e)


def _task_error_panel(folder, pos: int, model: str, labels, gt, options: DisplayOptions) -> Panel | None:
    """A model's error map by its task, against that task's ground truth (None when the image has none)."""
    task = folder.model_tasks[model]
    try:
        if task == "panoptic":
            return _errors_panel(model, gt, labels) if isinstance(gt, LabelMap) and folder.truth["panoptic"][pos] \
                and isinstance(labels, LabelMap) else None
        if task == "semantic" and folder.truth["semantic"][pos] and isinstance(labels, LabelMap):
            codes = task_maps.semantic_codes(task_maps.semantic_map(folder, pos, GT),
                                             task_maps.semantic_map(folder, pos, model))
            return codes_panel(f"{model}: errors (semantic)", codes, task_maps.SEMANTIC_LEGEND)
        if task == "instance" and folder.truth["instance"][pos] and isinstance(labels, LabelMap):
            codes = task_maps.instance_codes(folder, pos, model, options.iou, options.min_score)
            return codes_panel(f"{model}: errors (instance, IoU {options.iou:g})", codes, task_maps.INSTANCE_LEGEND)
    except LabelMapError as e:
        return Panel(f"{model}: errors", "codes", note=str(e))
    return None


def model_title(folder, model: str) -> str:
    """A model's panel title: its name, with its task when it is not panoptic."""
    task = folder.model_tasks[model]
    return model if task == "panoptic" else f"{model} ({task})"


def image_panels(folder, pos: int, models: list[str], options: DisplayOptions) -> tuple[list[Panel], bytes | None]:
    """All panels of the image at `pos` for the chosen models, and the photo's PNG bytes."""
    photo, note = photo_png(folder, pos)
    # A folder without any ground truth (a dump of unlabelled images) gets no ground truth panel at all.
    gt = task_maps.ground_truth_labels(folder, pos)
    predictions = {model: task_maps.prediction_labels(folder, pos, model, options.min_score) for model in models}
    errors = [panel for model in models
              if (panel := _task_error_panel(folder, pos, model, predictions[model], gt, options)) is not None]
    titles = {model: model_title(folder, model) for model in models}
    return build_panels(gt, predictions, folder.classes.palette, options, note, errors, titles), photo


def png_bytes(picture: np.ndarray | Layer) -> bytes:
    """Lossless PNG of an RGB(A) array or a Layer (palette mode up to 256 colours, transparency per entry);
    level 1 because encoding time counts more here than a few kilobytes."""
    buffer = io.BytesIO()
    if isinstance(picture, Layer) and len(picture.palette) <= 256:
        image = Image.fromarray(picture.indices.astype(np.uint8), mode="P")
        image.putpalette(picture.palette[:, :3].tobytes(), rawmode="RGB")
        image.save(buffer, format="PNG", compress_level=1, transparency=picture.palette[:, 3].tobytes())
    else:
        array = picture.rgba() if isinstance(picture, Layer) else picture
        Image.fromarray(np.ascontiguousarray(array)).save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _swatches(items) -> str:
    return "".join(f'<span class="vw-chip"><span class="vw-swatch" style="background:rgb{tuple(int(v) for v in c)}">'
                   f'</span>{html.escape(name)}</span>' for name, c in items)


def panels_html(panels: list[Panel], photo: bytes | None, legend: list[tuple[str, tuple]], image_key: str,
                options: DisplayOptions, size: tuple[int, int] | None = None) -> str:
    """The panel grid with its toolbar and legends; assets/panels.js makes it zoom, pan and report clicks.

    The photo is sent once, as a CSS variable every panel's bottom layer draws from. `size` (height, width)
    is used when no panel has a picture to take it from."""
    shapes = [p.fill.shape for p in panels if p.fill is not None]
    height, width = shapes[0] if shapes else (size or (3, 4))
    figures = []
    for k, panel in enumerate(panels):
        layers = '<div class="vw-photo"></div>' if photo is not None else ""
        if panel.fill is not None:
            layers += f'<img class="vw-fill" src="{_data_uri(png_bytes(panel.fill))}" alt="" draggable="false">'
        if panel.edges is not None:
            layers += f'<img class="vw-edges" src="{_data_uri(png_bytes(panel.edges))}" alt="" draggable="false">'
        missing = panel.fill is None and (panel.kind != "input" or photo is None)
        body = (f'<div class="vw-missing">{html.escape(panel.note or "nothing to show")}</div>' if missing else
                f'<div class="vw-stack">{layers}</div><div class="vw-mark"></div>')
        note = f'<div class="vw-note">{html.escape(panel.note)}</div>' if panel.note and not missing else ""
        figures.append(f'<figure class="vw-panel vw-kind-{panel.kind}" data-panel="{k}"><figcaption>'
                       f'{html.escape(panel.title)}</figcaption><div class="vw-view" data-width="{width}" '
                       f'data-height="{height}" style="aspect-ratio:{width}/{height}">{body}</div>{note}</figure>')
    legends = [f'<div class="vw-legend"><b>Classes</b> {_swatches(legend)}</div>'] if legend else []
    kinds = {p.title.split(": ")[-1] for p in panels if p.kind == "codes"}
    if "errors" in kinds:
        legends.append(f'<div class="vw-legend"><b>Error maps</b> (a pixel takes the type of the prediction\'s '
                       f'unmatched segment there, else of the ground truth\'s) {_swatches(ERROR_LEGEND)}</div>')
    if "errors (semantic)" in kinds:
        legends.append(f'<div class="vw-legend"><b>Semantic error maps</b> {_swatches(task_maps.SEMANTIC_LEGEND)}'
                       '</div>')
    if any(kind.startswith("errors (instance") for kind in kinds):
        legends.append('<div class="vw-legend"><b>Instance error maps</b> (COCOeval\'s matching among the '
                       f'instances shown) {_swatches(task_maps.INSTANCE_LEGEND)}</div>')
    if any(" vs B = " in p.title for p in panels):
        legends.append(f'<div class="vw-legend"><b>A vs B</b> {_swatches(PAIR_LEGEND)}</div>')
    toolbar = ('<div class="vw-toolbar"><button type="button" data-action="zoom-in" title="Zoom in">+</button>'
               '<button type="button" data-action="zoom-out" title="Zoom out">&minus;</button>'
               '<button type="button" data-action="reset" title="Reset zoom (double-click)">Reset</button>'
               '<button type="button" data-action="fullscreen" title="Full screen">Full screen</button>'
               '<span class="vw-hint">wheel: zoom all panels · drag: pan · click: inspect a pixel · '
               '&larr; &rarr;: previous / next image</span><span class="vw-pixel"></span></div>')
    classes = "vw-panels" + (" vw-overlay" if options.mode == "overlay" else "") + \
        (" vw-borders" if options.borders else "")
    photo_style = f"--vw-photo:url('{_data_uri(photo)}');" if photo is not None else ""
    return (f'<div class="{classes}" data-image="{html.escape(image_key)}" '
            f'style="{photo_style}--vw-opacity:{float(options.opacity):.3f}">{toolbar}'
            f'<div class="vw-grid">{"".join(figures)}</div>{"".join(legends)}</div>')


def legend(folder, class_ids) -> list[tuple[str, tuple]]:
    """(name, colour) per class id, in id order: the palette the panels are drawn with."""
    return [(folder.classes.label(c), tuple(folder.classes.palette[c]) if 0 <= c < len(folder.classes.palette) else (0, 0, 0))
            for c in sorted(set(class_ids))]


def legend_classes(folder, pos: int, models: list[str], min_score: float = PRESENCE_SCORE) -> list[tuple[str, tuple]]:
    """The legend of every class in the image's ground truth or the shown predictions."""
    present = set()
    for source in [GT, *models]:
        if source == GT or folder.model_tasks[source] == "panoptic":
            if folder.has(source, pos):
                with contextlib.suppress(FolderError):  # its panel says what is wrong with it
                    present.update(s["category_id"] for s in folder.segments(source, pos))
            continue
        labels = task_maps.prediction_labels(folder, pos, source, min_score)
        if isinstance(labels, LabelMap):
            present.update(s["category_id"] for s in labels.segments.values())
    if not folder.truth["panoptic"].any() and isinstance(gt := task_maps.ground_truth_labels(folder, pos), LabelMap):
        present.update(s["category_id"] for s in gt.segments.values())
    return legend(folder, present)


# ---------------------------------------------------------------------------------------------- pixel inspector

INSPECTOR_COLUMNS = ("source", "class", "segment", "area", "score", "this segment", "ground-truth segment here",
                     "error type")


def _describe_prediction(match, segment_id: int, class_label) -> str:
    status, other, iou = match.pred[segment_id]
    if status == "TP":
        return f"TP: IoU {iou:.3f} with ground-truth segment {other}"
    if status == "ignored":
        return "not counted: mostly on ground-truth void"
    covered, pixels = match.fp_cover.get(segment_id, (None, 0))
    where = "void" if covered is None else class_label(covered)
    return f"FP: unmatched (mostly covers {where})"


def _error_types(match, segment_id: int | None, gt_segment: int | None) -> str:
    """The error types of the predicted segment and the ground-truth segment at a pixel, with their links."""
    parts = []
    for side, errors, key, other in (("FP", match.pred_error, segment_id, "ground-truth segment"),
                                     ("FN", match.gt_error, gt_segment, "segment")):
        if key is not None and key in errors:
            kind, linked = errors[key]
            parts.append(f"{side} {kind}" + (f" (↔ {other} {linked})" if linked else ""))
    return "; ".join(parts)


def inspect_maps(gt: LabelMap | str | None, predictions: dict[str, LabelMap | str], x: int, y: int,
                 class_label) -> pd.DataFrame:
    """One row per source at pixel (x, y): class, segment, and what panopticapi's matching made of the segment.

    `class_label(id) -> name`. Sources that are strings (missing or broken) say so in the class column."""
    rows = []

    def at(labels: LabelMap):
        if not (0 <= y < labels.shape[0] and 0 <= x < labels.shape[1]):
            raise IndexError(f"pixel ({x}, {y}) is outside the {labels.shape[1]}x{labels.shape[0]} image")
        return int(labels.segment_map[y, x]), int(labels.class_map[y, x])

    gt_segment = None
    verdicts = []
    if isinstance(gt, LabelMap):
        gt_segment, gt_class = at(gt)
    for name, labels in predictions.items():
        if not isinstance(labels, LabelMap):
            rows.append({"source": name, "class": labels})
            continue
        segment_id, class_id = at(labels)
        row = {"source": name, "class": "void" if class_id < 0 else class_label(class_id)}
        if class_id >= 0:
            segment = labels.segments[segment_id]
            row.update(segment=segment_id, area=segment.get("area"), score=segment.get("score"))
        if isinstance(gt, LabelMap):
            try:
                match = cached_match(gt, labels)
            except LabelMapError as e:  # a hand-made folder may hold a pair that cannot be matched
                row["this segment"] = str(e)
                rows.append(row)
                continue
            if class_id >= 0:
                row["this segment"] = _describe_prediction(match, segment_id, class_label)
            else:
                row["this segment"] = "void: no segment here"
            if gt_class >= 0:
                status, other, iou = match.gt[gt_segment]
                row["ground-truth segment here"] = (f"TP (matched by segment {other})" if status == "TP"
                                                    else status)
                kind = match.gt_error.get(gt_segment, ("",))[0]
                verdicts.append(f"{status}{' ' + kind if kind else ''} for {name}")
            else:
                row["ground-truth segment here"] = "void (not scored)"
            row["error type"] = _error_types(match, segment_id if class_id >= 0 else None,
                                             gt_segment if gt_class >= 0 else None)
        rows.append(row)
    if gt is not None:
        if isinstance(gt, LabelMap):
            gt_row = {"source": "ground truth", "class": "void" if gt_class < 0 else class_label(gt_class)}
            if gt_class >= 0:
                gt_row.update(segment=gt_segment, area=gt.segments[gt_segment].get("area"),
                              **{"this segment": "; ".join(verdicts)})
            rows.insert(0, gt_row)
        else:
            rows.insert(0, {"source": "ground truth", "class": gt})
    # Without ground truth (the live tab) there is no matching to report.
    table = pd.DataFrame(rows, columns=list(INSPECTOR_COLUMNS) if gt is not None else list(INSPECTOR_COLUMNS[:5]))
    return table.astype(object).where(table.notna(), "")


def inspect_pixel(folder, pos: int, models: list[str], x: int, y: int,
                  options: DisplayOptions | None = None) -> pd.DataFrame:
    """The inspector table for the image at `pos` (see inspect_maps): panoptic models with panopticapi's
    matching, semantic and instance models with their task's verdict (task_maps.inspector_row)."""
    options = options or DisplayOptions()
    gt = _load_or_reason(folder, pos, GT) if folder.truth["panoptic"].any() else \
        task_maps.ground_truth_labels(folder, pos)
    # Without panoptic ground truth there is no panopticapi matching: panoptic models get their class map's verdict.
    panoptic = [m for m in models if folder.model_tasks[m] == "panoptic" and folder.truth["panoptic"].any()]
    predictions = {model: _load_or_reason(folder, pos, model) for model in panoptic}
    table = inspect_maps(gt, predictions, int(x), int(y), folder.classes.label)
    others = [task_maps.inspector_row(folder, pos, m, int(x), int(y), folder.classes.label, options.iou,
                                      options.min_score) for m in models if m not in panoptic]
    if not others:
        return table
    table = pd.concat([table, pd.DataFrame(others, columns=table.columns)], ignore_index=True)
    return table.astype(object).where(table.notna(), "")
