"""Renders label maps as pictures: one fixed colour per class, void black, white borders between segments.

Every panel of the dump and of the app goes through `render_panoptic`, so a class has the same colour everywhere.
"""

from __future__ import annotations

import numpy as np

VOID_COLOR = (0, 0, 0)
BORDER_COLOR = (255, 255, 255)


def palette_array(colors) -> np.ndarray:
    """(C,3) uint8 array from a sequence of RGB triples, with one extra row (index C) for void."""
    table = np.zeros((len(colors) + 1, 3), dtype=np.uint8)
    if len(colors):
        table[:-1] = np.asarray(colors, dtype=np.uint8).reshape(-1, 3)
    table[-1] = VOID_COLOR
    return table


def segment_borders(segment_map: np.ndarray) -> np.ndarray:
    """(H,W) bool: pixels whose right or lower neighbour belongs to another segment (void counts as a segment)."""
    borders = np.zeros(segment_map.shape, dtype=bool)
    right = segment_map[:, :-1] != segment_map[:, 1:]
    down = segment_map[:-1, :] != segment_map[1:, :]
    borders[:, :-1] |= right
    borders[:-1, :] |= down
    return borders


def render_panoptic(class_map: np.ndarray, segment_map: np.ndarray | None, colors, borders: bool = True) -> np.ndarray:
    """HxWx3 uint8 picture of a panoptic (or semantic) label map.

    class_map: (H,W) int, class id per pixel, negative = void. segment_map: (H,W) int segment ids (any
    numbering; only changes between neighbours matter), or None for a semantic map (borders between classes).
    colors: (C,3) RGB per class id.
    """
    table = palette_array(colors)
    picture = table[palette_indices(class_map, len(table) - 1)]
    if borders:
        picture[segment_borders(class_map if segment_map is None else segment_map)] = BORDER_COLOR
    return picture


def segments_to_class_map(segment_map: np.ndarray, segments, void_id: int = 0) -> np.ndarray:
    """(H,W) int32 class map from a segment-id map and its segments ({"id", "category_id"}); void = -1.

    Pixels whose id is `void_id` or is not listed among the segments are void.
    """
    ids = np.asarray([s["id"] for s in segments], dtype=np.int64)
    cats = np.asarray([s["category_id"] for s in segments], dtype=np.int32)
    order = np.argsort(ids)
    ids, cats = ids[order], cats[order]
    flat = segment_map.reshape(-1).astype(np.int64)
    pos = np.searchsorted(ids, flat)
    pos_clipped = np.minimum(pos, max(len(ids) - 1, 0))
    found = (pos < len(ids)) & (ids[pos_clipped] == flat) & (flat != void_id) if len(ids) else np.zeros(flat.shape, bool)
    out = np.full(flat.shape, -1, dtype=np.int32)
    if len(ids):
        out[found] = cats[pos_clipped[found]]
    return out.reshape(segment_map.shape)


def palette_indices(class_map: np.ndarray, n_colors: int) -> np.ndarray:
    """(H,W) row of `palette_array(colors)` each pixel takes: its class id, or `n_colors` (the void row) for
    negative and unknown ids. The lookup render_panoptic does, for renderers that keep the indices (palette PNGs
    are a quarter of the size of RGBA ones and faster to encode)."""
    dtype = np.uint8 if n_colors < 256 else np.int32
    return np.where((class_map < 0) | (class_map >= n_colors), n_colors, class_map).astype(dtype)
