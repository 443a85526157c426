"""How many instances of each class an image has, by class name (the `instance_counts` of instance_counts.json)."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence


def instance_counts(segments: Sequence[Mapping], class_names: Mapping[int, str],
                    thing_ids: Collection[int] | None = None) -> dict[str, int]:
    """{class name: number of segments of that class}, in class-id order; a stuff class counts 1.

    A class is stuff when it is not in `thing_ids`; without `thing_ids`, when its segments say "isthing": 0.
    Stuff counts 1 even if a prediction splits it into several segments: an image has one "sky", however many
    pieces of it are visible.
    """
    per_class: dict[int, int] = {}
    stuff: set[int] = set()
    for segment in segments:
        category_id = segment["category_id"]
        if category_id not in class_names:
            raise ValueError(f"segment {segment.get('id')} has category_id {category_id}, which has no class name")
        per_class[category_id] = per_class.get(category_id, 0) + 1
        is_thing = category_id in thing_ids if thing_ids is not None else bool(segment.get("isthing", True))
        if not is_thing:
            stuff.add(category_id)
    return {class_names[k]: 1 if k in stuff else per_class[k] for k in sorted(per_class)}
