"""Class tables (ids, names, thing/stuff, palette) of the datasets the published checkpoints were trained on.

Plain Python and numpy only: the dataset reader and the renderers use these without building a model.
"""

from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import numpy as np

_DATA = Path(__file__).with_name("data")
# Class ids index colour tables and per-class count arrays; real datasets have at most a few thousand classes.
MAX_CLASS_ID = 65535


@dataclass(frozen=True)
class ClassInfo:
    id: int  # contiguous class id, the index of the model's class logit
    name: str
    isthing: bool
    color: tuple[int, int, int]


@dataclass(frozen=True)
class ClassTable:
    """The classes of a dataset or a model in the one shape the product passes around, with the lookups every
    consumer needs. Manifests store it as entries, configs as their class fields; both convert here."""

    classes: tuple[ClassInfo, ...]

    def __post_init__(self) -> None:
        ids = [c.id for c in self.classes]
        if len(set(ids)) != len(ids) or any(not 0 <= i <= MAX_CLASS_ID for i in ids):
            raise ValueError(f"class ids must be distinct and in 0..{MAX_CLASS_ID}, got {ids[:20]}")

    def __len__(self) -> int:
        return len(self.classes)

    def __iter__(self):
        return iter(self.classes)

    @cached_property
    def names(self) -> dict[int, str]:
        return {c.id: c.name for c in self.classes}

    @cached_property
    def isthing(self) -> dict[int, bool]:
        """Class id -> thing (True) or stuff, in table order (the order panopticapi averages in)."""
        return {c.id: c.isthing for c in self.classes}

    @cached_property
    def column(self) -> dict[int, int]:
        """Class id -> its position in the table (the column of per-class count matrices)."""
        return {c.id: k for k, c in enumerate(self.classes)}

    @cached_property
    def palette(self) -> np.ndarray:
        """(largest id + 1, 3) uint8: the colour of every class id (black for ids the table skips)."""
        palette = np.zeros((max(self.names, default=-1) + 1, 3), dtype=np.uint8)
        for c in self.classes:
            palette[c.id] = c.color
        return palette

    def label(self, class_id: int) -> str:
        name = self.names.get(class_id)
        return name if name is not None else f"unknown class {class_id}"

    def entries(self) -> list[dict]:
        """The manifest's form: [{"id", "name", "isthing", "color"}]."""
        return [{"id": c.id, "name": c.name, "isthing": c.isthing, "color": list(c.color)} for c in self.classes]

    @classmethod
    def from_entries(cls, entries: Iterable[dict]) -> ClassTable:
        """The inverse of `entries`; ValueError for an entry that is not {id, name, isthing, RGB color}."""
        classes = []
        for entry in entries:
            try:
                if not isinstance(entry["id"], int) or isinstance(entry["id"], bool):
                    raise ValueError("id must be an integer")
                color = tuple(int(v) for v in entry["color"])
                info = ClassInfo(int(entry["id"]), str(entry["name"]), bool(entry["isthing"]), color)
            except (KeyError, TypeError, ValueError) as e:
                raise ValueError(f"class entry {entry!r}: {e!r}") from None
            if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                raise ValueError(f"class entry {entry!r}: color must be an RGB triple in 0..255")
            if not 0 <= info.id <= MAX_CLASS_ID:
                raise ValueError(f"class entry {entry!r}: id must lie in 0..{MAX_CLASS_ID}")
            classes.append(info)
        return cls(tuple(classes))


@dataclass(frozen=True)
class ADE20KClass(ClassInfo):
    semantic_value: int  # value in the semantic annotation PNG (id + 1)
    instance_red: int | None  # R value of this thing class in the instance PNG; None for stuff


@lru_cache(maxsize=1)
def ade20k_classes() -> tuple[ADE20KClass, ...]:
    """The 150 ADE20K panoptic classes in id order (100 things, 50 stuff)."""
    with open(_DATA / "ade20k_panoptic_classes.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    classes = tuple(
        ADE20KClass(
            id=int(r["id"]),
            name=r["name"],
            isthing=r["isthing"] == "1",
            color=(int(r["r"]), int(r["g"]), int(r["b"])),
            semantic_value=int(r["semantic_png_value"]),
            instance_red=int(r["instance_png_red_value"]) if r["instance_png_red_value"] else None,
        )
        for r in rows
    )
    assert [c.id for c in classes] == list(range(150)), "class table must list ids 0..149 in order"
    return classes


@dataclass(frozen=True)
class COCOClass(ClassInfo):
    coco_id: int  # category id in the COCO annotation files (1..200, with gaps)


# COCO panoptic categories as panopticapi's panoptic_coco_categories.json lists them: "coco_id r g b name".
# The 80 things come first; their order is also the COCO instance order.
_COCO_THINGS = """
1 220 20 60 person
2 119 11 32 bicycle
3 0 0 142 car
4 0 0 230 motorcycle
5 106 0 228 airplane
6 0 60 100 bus
7 0 80 100 train
8 0 0 70 truck
9 0 0 192 boat
10 250 170 30 traffic light
11 100 170 30 fire hydrant
13 220 220 0 stop sign
14 175 116 175 parking meter
15 250 0 30 bench
16 165 42 42 bird
17 255 77 255 cat
18 0 226 252 dog
19 182 182 255 horse
20 0 82 0 sheep
21 120 166 157 cow
22 110 76 0 elephant
23 174 57 255 bear
24 199 100 0 zebra
25 72 0 118 giraffe
27 255 179 240 backpack
28 0 125 92 umbrella
31 209 0 151 handbag
32 188 208 182 tie
33 0 220 176 suitcase
34 255 99 164 frisbee
35 92 0 73 skis
36 133 129 255 snowboard
37 78 180 255 sports ball
38 0 228 0 kite
39 174 255 243 baseball bat
40 45 89 255 baseball glove
41 134 134 103 skateboard
42 145 148 174 surfboard
43 255 208 186 tennis racket
44 197 226 255 bottle
46 171 134 1 wine glass
47 109 63 54 cup
48 207 138 255 fork
49 151 0 95 knife
50 9 80 61 spoon
51 84 105 51 bowl
52 74 65 105 banana
53 166 196 102 apple
54 208 195 210 sandwich
55 255 109 65 orange
56 0 143 149 broccoli
57 179 0 194 carrot
58 209 99 106 hot dog
59 5 121 0 pizza
60 227 255 205 donut
61 147 186 208 cake
62 153 69 1 chair
63 3 95 161 couch
64 163 255 0 potted plant
65 119 0 170 bed
67 0 182 199 dining table
70 0 165 120 toilet
72 183 130 88 tv
73 95 32 0 laptop
74 130 114 135 mouse
75 110 129 133 remote
76 166 74 118 keyboard
77 219 142 185 cell phone
78 79 210 114 microwave
79 178 90 62 oven
80 65 70 15 toaster
81 127 167 115 sink
82 59 105 106 refrigerator
84 142 108 45 book
85 196 172 0 clock
86 95 54 80 vase
87 128 76 255 scissors
88 201 57 1 teddy bear
89 246 0 122 hair drier
90 191 162 208 toothbrush
"""

_COCO_STUFF = """
92 255 255 128 banner
93 147 211 203 blanket
95 150 100 100 bridge
100 168 171 172 cardboard
107 146 112 198 counter
109 210 170 100 curtain
112 92 136 89 door-stuff
118 218 88 184 floor-wood
119 241 129 0 flower
122 217 17 255 fruit
125 124 74 181 gravel
128 70 70 70 house
130 255 228 255 light
133 154 208 0 mirror-stuff
138 193 0 92 net
141 76 91 113 pillow
144 255 180 195 platform
145 106 154 176 playingfield
147 230 150 140 railroad
148 60 143 255 river
149 128 64 128 road
151 92 82 55 roof
154 254 212 124 sand
155 73 77 174 sea
156 255 160 98 shelf
159 255 255 255 snow
161 104 84 109 stairs
166 169 164 131 tent
168 225 199 255 towel
171 137 54 74 wall-brick
175 135 158 223 wall-stone
176 7 246 231 wall-tile
177 107 255 200 wall-wood
178 58 41 149 water-other
180 183 121 142 window-blind
181 255 73 97 window-other
184 107 142 35 tree-merged
185 190 153 153 fence-merged
186 146 139 141 ceiling-merged
187 70 130 180 sky-other-merged
188 134 199 156 cabinet-merged
189 209 226 140 table-merged
190 96 36 108 floor-other-merged
191 96 96 96 pavement-merged
192 64 170 64 mountain-merged
193 152 251 152 grass-merged
194 208 229 228 dirt-merged
195 206 186 171 paper-merged
196 152 161 64 food-other-merged
197 116 112 0 building-other-merged
198 0 114 143 rock-merged
199 102 102 156 wall-other-merged
200 250 141 255 rug-merged
"""

# Cityscapes' 19 evaluation classes (train ids 0..18) with their official colours; person..bicycle are things.
_CITYSCAPES = """
128 64 128 road
244 35 232 sidewalk
70 70 70 building
102 102 156 wall
190 153 153 fence
153 153 153 pole
250 170 30 traffic light
220 220 0 traffic sign
107 142 35 vegetation
152 251 152 terrain
70 130 180 sky
220 20 60 person
255 0 0 rider
0 0 142 car
0 0 70 truck
0 60 100 bus
0 80 100 train
0 0 230 motorcycle
119 11 32 bicycle
"""
_CITYSCAPES_FIRST_THING = 11


def _rows(table: str, fields: int) -> list[tuple[list[int], str]]:
    """Lines of `fields` integers followed by a name that may contain spaces."""
    rows = []
    for line in table.strip().splitlines():
        parts = line.split(maxsplit=fields)
        rows.append(([int(p) for p in parts[:fields]], parts[fields]))
    return rows


@lru_cache(maxsize=1)
def coco_panoptic_classes() -> tuple[COCOClass, ...]:
    """The 133 COCO panoptic classes in contiguous id order: 80 things (ids 0..79), then 53 stuff (80..132)."""
    things = _rows(_COCO_THINGS, 4)
    stuff = _rows(_COCO_STUFF, 4)
    classes = tuple(
        COCOClass(id=i, name=name, isthing=i < len(things), color=(r, g, b), coco_id=coco_id)
        for i, ((coco_id, r, g, b), name) in enumerate(things + stuff)
    )
    assert len(things) == 80 and len(classes) == 133, "COCO panoptic has 80 things and 53 stuff classes"
    return classes


@lru_cache(maxsize=1)
def coco_instance_classes() -> tuple[COCOClass, ...]:
    """The 80 COCO instance (thing) classes, contiguous ids 0..79, same names and colours as in panoptic."""
    return coco_panoptic_classes()[:80]


@lru_cache(maxsize=1)
def cityscapes_classes() -> tuple[ClassInfo, ...]:
    """The 19 Cityscapes evaluation classes (train ids 0..18): 11 stuff, then 8 things."""
    classes = tuple(
        ClassInfo(id=i, name=name, isthing=i >= _CITYSCAPES_FIRST_THING, color=(r, g, b))
        for i, ((r, g, b), name) in enumerate(_rows(_CITYSCAPES, 3))
    )
    assert len(classes) == 19
    return classes
