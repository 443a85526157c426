"""A session's walk through the images: the current list (all, filtered or ranked) and where it stands.

The view is a plain dict so that gr.State can copy it per browser session; every function returns a new one.
"""

from __future__ import annotations

from collections.abc import Sequence

from viewer.markup import text


def new_view(positions: Sequence[int], label: str = "all images", current: int | None = None,
             filtered: Sequence[int] | None = None, ranking: dict | None = None, left_out: int = 0) -> dict:
    """A view of `positions`, standing on `current` (default: the first of the list).

    `filtered`: the filter's result a ranking was taken from (default: `positions`, which then are that
    result), so that ranking again ranks the filtered images; `ranking`: the rank_images arguments that made
    `positions`, and `left_out` the images it could not rank."""
    positions = [int(p) for p in positions]
    view = {"positions": positions, "label": label, "cursor": 0 if positions else None,
            "current": positions[0] if positions else None,
            "filtered": positions if filtered is None else [int(p) for p in filtered], "ranking": ranking,
            "left_out": left_out}
    return go_to(view, current) if current is not None else view


def go_to(view: dict, pos: int) -> dict:
    """Stands on image `pos`; if it is not in the list, the list stays and the view says so (cursor None)."""
    pos = int(pos)
    positions = view["positions"]
    cursor = view["cursor"]
    if cursor is None or cursor >= len(positions) or positions[cursor] != pos:
        cursor = positions.index(pos) if pos in positions else None
    return {**view, "cursor": cursor, "current": pos}


def step(view: dict, delta: int) -> dict:
    """Moves `delta` images along the list, stopping at either end; from an image outside the list, the first
    step lands on the list's first (next) or last (previous) image."""
    positions = view["positions"]
    if not positions:
        return view
    if view["cursor"] is None:
        cursor = 0 if delta > 0 else len(positions) - 1
    else:
        cursor = min(max(view["cursor"] + delta, 0), len(positions) - 1)
    return {**view, "cursor": cursor, "current": positions[cursor]}


def describe(folder, view: dict) -> str:
    """Where the view stands, in words (markdown; names from the folder shown as text)."""
    pos = view["current"]
    label = view["label"]  # Markdown, made safe where it was made (names from the folder in code spans)
    if pos is None:
        return f"No image to show: the {label} list is empty."
    entry = folder.manifest["images"][pos]
    key = entry.get("key") or entry.get("stem") or ""
    where = (f"image {view['cursor'] + 1} of {len(view['positions'])} ({label})" if view["cursor"] is not None
             else f"outside the current list ({label}, {len(view['positions'])} images)")
    notes = folder.image_notes(pos)
    lines = [f"**{folder.images[pos]}** · index {entry['index']} · {text(key)} · "
             f"{entry.get('width')}x{entry.get('height')} · {where}"]
    lines += [f"- ⚠ {text(note)}" for note in notes]
    return "\n".join(lines)
