"""Toy scenes in the ADE20K panoptic format: the data the demo models are trained and evaluated on.

Each scene is an outdoor landscape or an indoor room, drawn from 12 ADE20K stuff classes in plausible places (sky
above mountains, buildings or trees, grass or sand below, a road or a lake on the ground; a ceiling above a wall
above a floor with a rug) and 10 thing classes drawn as textured shapes (people, cars, boats; windows, paintings,
doors, chairs, tables, lamps, cabinets). Several instances per class, varied sizes, painter's-order occlusion
kept partial (boxes overlap by at most MAX_OVERLAP), and some void: unlabeled clutter, and instances so occluded
that they were left unlabeled. Every image is a pure function of (seed, split, index), so a split is the same
whatever its length and wherever it is generated.

    python -m segdata.scenes --out DIR [--train 4000] [--val 60] [--seed 0]

writes DIR/ADEChallengeData2016.zip and DIR/annotations_instance.zip, which `segdata.ade20k.ADE20K` reads.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from eomt.classes import ade20k_classes

_BY_NAME = {c.name: c for c in ade20k_classes()}
STUFF_CLASSES = ("sky", "mountain, mount", "building", "tree", "grass", "sand", "road, route", "water",
                 "wall", "ceiling", "floor", "rug")
THING_CLASSES = ("person", "car", "boat", "window", "painting, picture", "door", "chair", "table", "lamp",
                 "cabinet")
CLASS_IDS = {name: _BY_NAME[name].id for name in STUFF_CLASSES + THING_CLASSES}
SPLIT_PREFIX = {"training": "ADE_train", "validation": "ADE_val"}
SIZE_RANGE = (128, 176)  # image sides in pixels, both ends included
MAX_ASPECT = 1.3  # long side / short side
MIN_VISIBLE_AREA = 150  # an instance left with fewer visible pixels is unlabeled (void), as annotators would skip it

Rgb = tuple[float, float, float]


class Canvas:
    """The photo being painted and its two annotation PNGs (ADE20K semantic and instance encodings)."""

    def __init__(self, rng: np.random.Generator, height: int, width: int):
        self.rng, self.height, self.width = rng, height, width
        self.image = np.zeros((height, width, 3), np.float32)
        self.semantic = np.zeros((height, width), np.uint8)  # class id + 1, 0 = unlabeled
        self.instance = np.zeros((height, width), np.int32)  # instance index, 0 = none
        self.instance_class: dict[int, str] = {}
        self.yy, self.xx = np.mgrid[0:height, 0:width].astype(np.float32)

    def paint(self, mask: np.ndarray, pixels: np.ndarray, name: str | None, instance: int = 0) -> None:
        """Paints `pixels` (H, W, 3) where `mask` holds; labels the pixels `name` (None = void)."""
        self.image[mask] = pixels[mask]
        self.semantic[mask] = 0 if name is None else CLASS_IDS[name] + 1
        self.instance[mask] = instance
        if instance:
            self.instance_class[instance] = name

    def new_instance(self) -> int:
        return len(self.instance_class) + 1

    def polygon(self, points) -> np.ndarray:
        return _draw(self.height, self.width, lambda d: d.polygon([tuple(map(float, p)) for p in points], fill=1))

    def ellipse(self, x0, y0, x1, y1) -> np.ndarray:
        return _draw(self.height, self.width, lambda d: d.ellipse((x0, y0, x1, y1), fill=1))

    def rect(self, x0, y0, x1, y1) -> np.ndarray:
        return _draw(self.height, self.width, lambda d: d.rectangle((x0, y0, x1 - 1, y1 - 1), fill=1))

    def annotations(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(photo uint8 HxWx3, semantic uint8 HxW, instance uint8 HxWx3) with instances renumbered 1..n."""
        visible = np.bincount(self.instance.ravel(), minlength=len(self.instance_class) + 1)
        semantic, index = self.semantic.copy(), np.zeros_like(self.instance)
        red = np.zeros_like(self.semantic)
        kept = 0
        for old in range(1, len(visible)):
            where = self.instance == old
            if visible[old] == 0:
                continue
            if visible[old] < MIN_VISIBLE_AREA:
                semantic[where] = 0
                continue
            kept += 1
            index[where] = kept
            red[where] = _BY_NAME[self.instance_class[old]].instance_red
        instance = np.stack([red, index.astype(np.uint8), np.zeros_like(red)], axis=-1)
        photo = self.image + self.rng.normal(0, 3.0, self.image.shape)  # sensor noise
        return np.clip(photo, 0, 255).round().astype(np.uint8), semantic, instance


def _draw(height: int, width: int, draw: Callable) -> np.ndarray:
    image = Image.new("L", (width, height), 0)
    draw(ImageDraw.Draw(image))
    return np.asarray(image, dtype=bool)


# ------------------------------------------------------------------------------------------------- textures

def _jitter(rng: np.random.Generator, color: Rgb, amount: float = 18.0) -> np.ndarray:
    return np.clip(np.asarray(color, np.float32) + rng.normal(0, amount, 3), 0, 255).astype(np.float32)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Value noise in [-1, 1] with features about `cell` pixels wide."""
    grid = rng.uniform(-1, 1, (int(height / cell) + 2, int(width / cell) + 2)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, mode="F").resize((width, height), Image.BILINEAR))


def _flat(canvas: Canvas, color: Rgb, grain: float = 6.0, blotch: float = 0.0, cell: float = 12.0) -> np.ndarray:
    rng = canvas.rng
    pixels = np.broadcast_to(np.asarray(color, np.float32), (canvas.height, canvas.width, 3)).copy()
    if blotch:
        pixels += blotch * _smooth_noise(rng, canvas.height, canvas.width, cell)[..., None]
    pixels += rng.normal(0, grain, (canvas.height, canvas.width, 1))
    return pixels


def _stripes(canvas: Canvas, color_a: Rgb, color_b: Rgb, period: float, angle: float, duty: float = 0.5,
             wave: float = 0.0) -> np.ndarray:
    """Two-colour stripes `period` pixels apart at `angle` (radians; 0 = vertical stripes)."""
    rng = canvas.rng
    t = canvas.xx * np.cos(angle) + canvas.yy * np.sin(angle) + rng.uniform(0, period)
    if wave:
        t = t + wave * np.sin(canvas.xx / rng.uniform(4, 8) + rng.uniform(0, 6.3))
    on = ((t / period) % 1.0) < duty
    pixels = np.where(on[..., None], np.asarray(color_a, np.float32), np.asarray(color_b, np.float32))
    return pixels + rng.normal(0, 4.0, (canvas.height, canvas.width, 1))


def _checker(canvas: Canvas, color_a: Rgb, color_b: Rgb, cell: float) -> np.ndarray:
    on = ((canvas.xx // cell + canvas.yy // cell) % 2) == 0
    pixels = np.where(on[..., None], np.asarray(color_a, np.float32), np.asarray(color_b, np.float32))
    return pixels + canvas.rng.normal(0, 4.0, (canvas.height, canvas.width, 1))


def _bricks(canvas: Canvas, brick: Rgb, mortar: Rgb, height: float) -> np.ndarray:
    row = canvas.yy // height
    x = canvas.xx + (row % 2) * height
    lines = ((canvas.yy % height) < 1.2) | ((x % (2.2 * height)) < 1.2)
    shade = _smooth_noise(canvas.rng, canvas.height, canvas.width, height * 2)[..., None] * 15
    pixels = np.where(lines[..., None], np.asarray(mortar, np.float32), np.asarray(brick, np.float32) + shade)
    return pixels + canvas.rng.normal(0, 4.0, (canvas.height, canvas.width, 1))


def _vertical_gradient(canvas: Canvas, top: Rgb, bottom: Rgb, y0: float, y1: float) -> np.ndarray:
    t = np.clip((canvas.yy - y0) / max(1.0, y1 - y0), 0, 1)[..., None]
    return (1 - t) * np.asarray(top, np.float32) + t * np.asarray(bottom, np.float32)


# ------------------------------------------------------------------------------------------- stuff regions

def _sky(canvas: Canvas, horizon: float) -> None:
    rng = canvas.rng
    top = _jitter(rng, (70, 130, 215), 15)
    pixels = _vertical_gradient(canvas, top, _jitter(rng, (175, 210, 240), 10), 0, horizon)
    clouds = np.clip(_smooth_noise(rng, canvas.height, canvas.width, rng.uniform(14, 30)) * 2 - 0.6, 0, 1)
    pixels = pixels * (1 - clouds[..., None]) + 245 * clouds[..., None]
    canvas.paint(canvas.yy < horizon, pixels, "sky")


def _skyline(canvas: Canvas, horizon: float) -> float:
    """A band of mountains, buildings or trees standing on the horizon; returns the new ground line."""
    rng, width = canvas.rng, canvas.width
    kind = rng.choice(["mountain", "building", "tree", "none"], p=[0.35, 0.3, 0.25, 0.1])
    if kind == "mountain":
        peaks = int(rng.integers(1, 4))
        xs = np.sort(rng.uniform(-0.2, 1.2, peaks)) * width
        points = [(-5, horizon + 1)]
        for x in xs:
            points += [(x - rng.uniform(0.2, 0.45) * width, horizon + 1),
                       (x, horizon - rng.uniform(0.3, 0.8) * horizon),
                       (x + rng.uniform(0.2, 0.45) * width, horizon + 1)]
        points.append((width + 5, horizon + 1))
        mask = canvas.polygon(points)
        color = _jitter(rng, (115, 100, 90), 20)
        pixels = _flat(canvas, color, 5, 30, 6)
        snow = canvas.yy < horizon - 0.55 * horizon + rng.normal(0, 3, (canvas.height, canvas.width))
        pixels[snow] = 235
        canvas.paint(mask, pixels, "mountain, mount")
    elif kind == "building":
        pixels = _bricks(canvas, _jitter(rng, rng.choice([(150, 75, 60), (140, 135, 130), (190, 160, 120)]), 15),
                         (210, 205, 195), rng.uniform(3, 5))
        x = rng.uniform(-10, 10)
        while x < width:
            w = rng.uniform(0.2, 0.45) * width
            h = rng.uniform(0.3, 0.85) * horizon
            canvas.paint(canvas.rect(x, horizon - h, x + w, horizon + 1), pixels, "building")
            x += w + rng.uniform(-5, 15)
    elif kind == "tree":
        color = _jitter(rng, (40, 95, 35), 12)
        pixels = _flat(canvas, color, 6, 30, 5)
        mask = canvas.rect(0, horizon - 0.15 * horizon, width, horizon + 1)
        for _ in range(int(rng.integers(4, 9))):
            r = rng.uniform(0.12, 0.3) * horizon + 4
            x, y = rng.uniform(0, width), horizon - rng.uniform(0.1, 0.5) * horizon
            mask |= canvas.ellipse(x - r, y - r, x + r, y + r)
        canvas.paint(mask & (canvas.yy <= horizon + 1), pixels, "tree")
    return horizon


def _outdoor_ground(canvas: Canvas, horizon: float) -> list[tuple[str, np.ndarray]]:
    """Grass or sand below the horizon, maybe a road and/or a lake; returns (class, region) where things stand."""
    rng, width, height = canvas.rng, canvas.width, canvas.height
    ground = "grass" if rng.random() < 0.65 else "sand"
    if ground == "grass":
        pixels = _stripes(canvas, _jitter(rng, (70, 150, 50), 15), _jitter(rng, (55, 125, 40), 12),
                          rng.uniform(2, 4), 0.0, 0.5)
        pixels += 12 * _smooth_noise(rng, height, width, 10)[..., None]
    else:
        pixels = _flat(canvas, _jitter(rng, (215, 190, 130), 12), 10, 12, 8)
    below = canvas.yy >= horizon
    canvas.paint(below, pixels, ground)
    places = [(ground, below)]

    if rng.random() < 0.5:  # a lake
        y0 = rng.uniform(horizon + 2, horizon + 0.4 * (height - horizon))
        y1 = rng.uniform(y0 + 0.25 * (height - y0), height + 10)
        x0, x1 = rng.uniform(-0.3, 0.4) * width, rng.uniform(0.6, 1.3) * width
        mask = canvas.ellipse(x0, y0, x1, y1 + (y1 - y0) * rng.uniform(0, 0.6)) & below
        pixels = _stripes(canvas, _jitter(rng, (60, 110, 190), 15), _jitter(rng, (95, 150, 215), 15),
                          rng.uniform(4, 7), np.pi / 2, 0.35, wave=1.5)
        canvas.paint(mask, pixels, "water")
        places.append(("water", mask))
    if rng.random() < 0.6:  # a road running to the horizon
        center, top_w = rng.uniform(0.2, 0.8) * width, rng.uniform(0.05, 0.15) * width
        bottom_center, bottom_w = center + rng.uniform(-0.5, 0.5) * width, rng.uniform(0.45, 0.9) * width
        y_top = horizon + rng.uniform(0, 0.3) * (height - horizon)
        mask = canvas.polygon([(center - top_w / 2, y_top), (center + top_w / 2, y_top),
                               (bottom_center + bottom_w / 2, height), (bottom_center - bottom_w / 2, height)])
        pixels = _flat(canvas, _jitter(rng, (85, 85, 90), 10), 8, 8, 6)
        t = np.clip((canvas.yy - y_top) / max(1.0, height - y_top), 0, 1)
        line_x = center + t * (bottom_center - center)
        dashes = (np.abs(canvas.xx - line_x) < 0.6 + 2.5 * t) & (((canvas.yy - y_top) / (3 + 10 * t)) % 2 < 1)
        pixels[dashes] = (235, 225, 120)
        canvas.paint(mask, pixels, "road, route")
        places.append(("road, route", mask))
    return places


def _room(canvas: Canvas) -> tuple[float, float]:
    """Ceiling, wall and floor (and maybe a rug); returns (ceiling line, floor line)."""
    rng, width, height = canvas.rng, canvas.width, canvas.height
    ceiling_y = rng.uniform(0.08, 0.22) * height if rng.random() < 0.75 else -1.0
    floor_y = rng.uniform(0.55, 0.72) * height
    wall_color = _jitter(rng, [(225, 210, 180), (190, 215, 195), (185, 200, 225), (230, 190, 170),
                               (200, 200, 200)][int(rng.integers(0, 5))], 10)
    canvas.paint(canvas.yy >= -1, _flat(canvas, wall_color, 3, 6, 30), "wall")
    if ceiling_y > 0:
        pixels = _checker(canvas, (245, 245, 240), (232, 232, 226), rng.uniform(8, 14))
        canvas.paint(canvas.yy < ceiling_y, pixels, "ceiling")
    if rng.random() < 0.6:  # wooden planks
        pixels = _stripes(canvas, _jitter(rng, (150, 100, 60), 15), _jitter(rng, (120, 80, 45), 12),
                          rng.uniform(5, 9), np.pi / 2 + rng.uniform(-0.1, 0.1), 0.85)
    else:  # tiles
        pixels = _checker(canvas, _jitter(rng, (170, 170, 165), 20), _jitter(rng, (120, 120, 118), 20),
                          rng.uniform(8, 14))
    canvas.paint(canvas.yy >= floor_y, pixels, "floor")
    if rng.random() < 0.6:
        cx, cy = rng.uniform(0.2, 0.8) * width, rng.uniform(floor_y + 0.3 * (height - floor_y), height)
        rx, ry = rng.uniform(0.15, 0.35) * width, rng.uniform(0.12, 0.3) * (height - floor_y)
        color = _jitter(rng, [(170, 40, 50), (60, 70, 150), (190, 140, 60)][int(rng.integers(0, 3))], 15)
        pixels = _stripes(canvas, color, color * 0.6, rng.uniform(3, 5), rng.uniform(0, np.pi), 0.3)
        mask = canvas.ellipse(cx - rx, cy - ry, cx + rx, cy + ry) if rng.random() < 0.5 else \
            canvas.rect(cx - rx, cy - ry, cx + rx, cy + ry)
        canvas.paint(mask & (canvas.yy >= floor_y), pixels, "rug")
    return ceiling_y, floor_y


# ------------------------------------------------------------------------------------------------- things
# Each draws one instance whose feet (or bottom edge) stand at (x, y) with height h, in its own colours.

def _person(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(0.34, 0.42)
    head = h * 0.17
    skin = _jitter(rng, [(235, 195, 165), (190, 140, 100), (120, 85, 60)][int(rng.integers(0, 3))], 8)
    shirt = _jitter(rng, tuple(rng.uniform(30, 230, 3)), 0)
    trousers = _jitter(rng, [(40, 45, 70), (60, 60, 60), (110, 90, 60)][int(rng.integers(0, 3))], 10)
    legs = canvas.polygon([(x - w * 0.4, y), (x - w * 0.05, y), (x, y - h * 0.45), (x + w * 0.05, y),
                           (x + w * 0.4, y), (x + w * 0.35, y - h * 0.48), (x - w * 0.35, y - h * 0.48)])
    body = canvas.polygon([(x - w * 0.38, y - h * 0.46), (x + w * 0.38, y - h * 0.46), (x + w * 0.5, y - h * 0.78),
                           (x - w * 0.5, y - h * 0.78)])
    arms = canvas.rect(x - w * 0.62, y - h * 0.78, x - w * 0.42, y - h * 0.45) | \
        canvas.rect(x + w * 0.42, y - h * 0.78, x + w * 0.62, y - h * 0.45)
    face = canvas.ellipse(x - head * 0.45, y - h, x + head * 0.45, y - h + head)
    neck = canvas.rect(x - head * 0.2, y - h * 0.86, x + head * 0.2, y - h * 0.77)
    canvas.paint(legs, _flat(canvas, trousers, 5), "person", instance)
    canvas.paint(body | arms, _flat(canvas, shirt, 5, 10, 4), "person", instance)
    canvas.paint(face | neck, _flat(canvas, skin, 3), "person", instance)


def _car(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(2.0, 2.6)
    body_color = _jitter(rng, [(200, 30, 30), (30, 60, 170), (235, 235, 235), (30, 30, 35), (230, 200, 40),
                               (120, 125, 130)][int(rng.integers(0, 6))], 12)
    wheel_r = h * 0.2
    body = canvas.rect(x - w / 2, y - h * 0.62, x + w / 2, y - wheel_r * 0.6)
    cabin = canvas.polygon([(x - w * 0.32, y - h * 0.6), (x - w * 0.2, y - h), (x + w * 0.2, y - h),
                            (x + w * 0.35, y - h * 0.6)])
    glass = canvas.polygon([(x - w * 0.26, y - h * 0.64), (x - w * 0.18, y - h * 0.92), (x + w * 0.18, y - h * 0.92),
                            (x + w * 0.28, y - h * 0.64)])
    canvas.paint(body | cabin, _flat(canvas, body_color, 4, 12, 8), "car", instance)
    canvas.paint(glass, _vertical_gradient(canvas, (150, 190, 220), (70, 90, 110), y - h, y - h * 0.6), "car",
                 instance)
    for wx in (x - w * 0.3, x + w * 0.3):
        wheel = canvas.ellipse(wx - wheel_r, y - 2 * wheel_r, wx + wheel_r, y)
        hub = canvas.ellipse(wx - wheel_r * 0.4, y - wheel_r * 1.4, wx + wheel_r * 0.4, y - wheel_r * 0.6)
        canvas.paint(wheel, _flat(canvas, (25, 25, 25), 3), "car", instance)
        canvas.paint(hub, _flat(canvas, (170, 170, 175), 3), "car", instance)


def _boat(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(1.2, 1.7)
    hull_color = _jitter(rng, [(240, 240, 240), (170, 40, 40), (60, 60, 120), (150, 100, 60)][int(rng.integers(0, 4))])
    hull = canvas.polygon([(x - w / 2, y - h * 0.42), (x + w / 2, y - h * 0.42), (x + w * 0.35, y),
                           (x - w * 0.35, y)])
    mast = canvas.rect(x - max(1.5, h * 0.04), y - h, x + max(1.5, h * 0.04), y - h * 0.4)
    sail = canvas.polygon([(x + h * 0.05, y - h * 0.98), (x + h * 0.05, y - h * 0.44), (x + w * 0.45, y - h * 0.44)])
    canvas.paint(hull, _stripes(canvas, hull_color, hull_color * 0.7, h * 0.12, np.pi / 2, 0.8), "boat", instance)
    canvas.paint(mast, _flat(canvas, (90, 60, 40), 3), "boat", instance)
    canvas.paint(sail, _flat(canvas, _jitter(rng, (245, 240, 225), 8), 4), "boat", instance)


def _window(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(0.6, 1.2)
    frame = _jitter(rng, (245, 245, 245), 6) if rng.random() < 0.7 else _jitter(rng, (110, 70, 40), 10)
    t = max(1.5, h * 0.07)
    outer = canvas.rect(x - w / 2, y - h, x + w / 2, y)
    canvas.paint(outer, _flat(canvas, frame, 3), "window", instance)
    glass = _vertical_gradient(canvas, _jitter(rng, (140, 190, 235), 10), (210, 230, 245), y - h, y)
    for gx0, gx1 in ((x - w / 2 + t, x - t / 2), (x + t / 2, x + w / 2 - t)):
        for gy0, gy1 in ((y - h + t, y - h / 2 - t / 2), (y - h / 2 + t / 2, y - t)):
            canvas.paint(canvas.rect(gx0, gy0, gx1, gy1), glass, "window", instance)


def _painting(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(0.7, 1.6)
    frame = _jitter(rng, [(180, 140, 50), (60, 40, 25), (20, 20, 20)][int(rng.integers(0, 3))], 10)
    t = max(1.5, h * 0.08)
    canvas.paint(canvas.rect(x - w / 2, y - h, x + w / 2, y), _flat(canvas, frame, 4), "painting, picture", instance)
    art = np.stack([_smooth_noise(rng, canvas.height, canvas.width, rng.uniform(3, 8)) for _ in range(3)], -1)
    art = 128 + 110 * art
    canvas.paint(canvas.rect(x - w / 2 + t, y - h + t, x + w / 2 - t, y - t), art, "painting, picture", instance)


def _door(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(0.38, 0.5)
    color = _jitter(rng, [(140, 90, 50), (235, 235, 230), (100, 60, 35)][int(rng.integers(0, 3))], 10)
    canvas.paint(canvas.rect(x - w / 2, y - h, x + w / 2, y), _stripes(canvas, color, color * 0.9, 4, 0.0, 0.5),
                 "door", instance)
    for py0, py1 in ((0.92, 0.55), (0.45, 0.1)):
        panel = canvas.rect(x - w * 0.35, y - h * py0, x + w * 0.35, y - h * py1)
        canvas.paint(panel & ~canvas.rect(x - w * 0.3, y - h * py0 + 2, x + w * 0.3, y - h * py1 - 2),
                     _flat(canvas, color * 0.7, 3), "door", instance)
    knob = canvas.ellipse(x + w * 0.28, y - h * 0.52, x + w * 0.4, y - h * 0.46)
    canvas.paint(knob, _flat(canvas, (220, 190, 60), 3), "door", instance)


def _wood(rng: np.random.Generator) -> np.ndarray:
    return _jitter(rng, [(150, 95, 50), (100, 60, 30), (190, 150, 100), (60, 40, 30)][int(rng.integers(0, 4))], 12)


def _chair(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(0.5, 0.65)
    facing = 1 if rng.random() < 0.5 else -1
    leg = max(2.5, h * 0.1)
    seat_y = y - h * 0.45
    back_x = x - facing * w / 2
    parts = canvas.rect(x - w / 2, seat_y - h * 0.12, x + w / 2, seat_y)  # seat
    parts |= canvas.rect(min(back_x, back_x + facing * leg * 1.3), y - h, max(back_x, back_x + facing * leg * 1.3),
                         seat_y)  # back post
    parts |= canvas.rect(min(back_x, back_x + facing * w * 0.6), y - h, max(back_x, back_x + facing * w * 0.6),
                         y - h * 0.72)  # backrest
    parts |= canvas.rect(x - w / 2, seat_y, x - w / 2 + leg, y) | canvas.rect(x + w / 2 - leg, seat_y, x + w / 2, y)
    canvas.paint(parts, _flat(canvas, _wood(rng), 4), "chair", instance)


def _table(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(1.6, 2.4)
    leg = max(2.5, h * 0.12)
    color = _wood(rng)
    top = canvas.rect(x - w / 2, y - h, x + w / 2, y - h * 0.8)
    legs = canvas.rect(x - w * 0.44, y - h * 0.8, x - w * 0.44 + leg, y) | \
        canvas.rect(x + w * 0.44 - leg, y - h * 0.8, x + w * 0.44, y)
    canvas.paint(top | legs, _stripes(canvas, color, color * 0.85, 3, np.pi / 2, 0.5), "table", instance)
    if rng.random() < 0.5:  # a cloth
        cloth = canvas.polygon([(x - w * 0.5, y - h), (x + w * 0.5, y - h), (x + w * 0.55, y - h * 0.6),
                                (x - w * 0.55, y - h * 0.6)])
        canvas.paint(cloth, _checker(canvas, (240, 240, 240), _jitter(rng, (200, 60, 60), 20), 3), "table",
                     instance)


def _lamp(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    shade_w = h * rng.uniform(0.3, 0.45)
    pole = max(2.0, h * 0.05)
    shade = canvas.polygon([(x - shade_w * 0.3, y - h), (x + shade_w * 0.3, y - h), (x + shade_w / 2, y - h * 0.72),
                            (x - shade_w / 2, y - h * 0.72)])
    stem = canvas.rect(x - pole, y - h * 0.73, x + pole, y)
    base = canvas.ellipse(x - shade_w * 0.35, y - h * 0.06, x + shade_w * 0.35, y)
    canvas.paint(stem | base, _flat(canvas, _jitter(rng, (60, 60, 60), 20), 3), "lamp", instance)
    canvas.paint(shade, _vertical_gradient(canvas, _jitter(rng, (250, 235, 170), 8), (230, 200, 120), y - h,
                                           y - h * 0.72), "lamp", instance)


def _cabinet(canvas: Canvas, x: float, y: float, h: float) -> None:
    rng, instance = canvas.rng, canvas.new_instance()
    w = h * rng.uniform(0.6, 1.3)
    color = _wood(rng) if rng.random() < 0.6 else _jitter(rng, (235, 235, 230), 8)
    canvas.paint(canvas.rect(x - w / 2, y - h, x + w / 2, y), _flat(canvas, color, 4), "cabinet", instance)
    dark = _flat(canvas, color * 0.55, 3)
    rows = int(rng.integers(1, 4))
    for r in range(1, rows):
        canvas.paint(canvas.rect(x - w / 2, y - h + r * h / rows, x + w / 2, y - h + r * h / rows + 1.2), dark,
                     "cabinet", instance)
    canvas.paint(canvas.rect(x - 0.6, y - h, x + 0.6, y), dark, "cabinet", instance)
    for r in range(rows):
        ky = y - h + (r + 0.5) * h / rows
        for kx in (x - w * 0.1, x + w * 0.1):
            canvas.paint(canvas.ellipse(kx - 1.5, ky - 1.5, kx + 1.5, ky + 1.5), _flat(canvas, (200, 180, 80), 2),
                         "cabinet", instance)


# --------------------------------------------------------------------------------------------------- scenes

def _clutter(canvas: Canvas, count: int) -> None:
    """Unlabeled objects (void): blobs of random texture."""
    rng = canvas.rng
    for _ in range(count):
        r = rng.uniform(0.03, 0.08) * min(canvas.height, canvas.width)
        x, y = rng.uniform(0, canvas.width), rng.uniform(0.3, 1.0) * canvas.height
        mask = canvas.ellipse(x - r, y - r * rng.uniform(0.5, 1.2), x + r, y + r * rng.uniform(0.5, 1.2))
        pixels = _checker(canvas, tuple(rng.uniform(0, 255, 3)), tuple(rng.uniform(0, 255, 3)), rng.uniform(1, 3))
        canvas.paint(mask, pixels, None)


# Width / height of each thing's bounding box (at most), to keep occlusion partial.
_ASPECT = {_person: 0.55, _car: 2.6, _boat: 1.7, _chair: 0.65, _table: 2.5, _lamp: 0.45, _cabinet: 1.3}
MAX_OVERLAP = 0.4  # a thing whose box overlaps an earlier thing's by more (of the smaller box) is left out


def _limit_overlap(things: list[tuple[float, Callable, float, float]]) -> list[tuple[float, Callable, float, float]]:
    """The things (feet y, draw, x, height) in order, without those that would hide or be hidden too much."""
    kept, boxes = [], []
    for y, draw, x, h in things:
        half = h * _ASPECT[draw] / 2
        box = (x - half, y - h, x + half, y)
        area = (box[2] - box[0]) * (box[3] - box[1])
        if all(max(0.0, min(box[2], b[2]) - max(box[0], b[0])) * max(0.0, min(box[3], b[3]) - max(box[1], b[1]))
               <= MAX_OVERLAP * min(area, (b[2] - b[0]) * (b[3] - b[1])) for b in boxes):
            kept.append((y, draw, x, h))
            boxes.append(box)
    return kept


def _outdoor(canvas: Canvas) -> None:
    rng, height = canvas.rng, canvas.height
    horizon = rng.uniform(0.3, 0.55) * height
    _sky(canvas, horizon)
    _skyline(canvas, horizon)
    places = dict(_outdoor_ground(canvas, horizon))
    things: list[tuple[float, Callable, float, float]] = []  # (depth, draw, x, height)

    def perspective(y: float, near: float) -> float:
        # Things further up (nearer the horizon) are smaller.
        return near * (0.6 + 0.4 * (y - horizon) / max(1.0, height - horizon))

    def place(region: np.ndarray, draw: Callable, low: float, high: float) -> None:
        """A thing standing on a random pixel of `region`, `low`..`high` of the image height when nearest."""
        ys, xs = np.nonzero(region)
        if len(ys) == 0:
            return
        k = int(rng.integers(0, len(ys)))
        x, y = float(xs[k]), float(ys[k])
        things.append((y, draw, x, perspective(y, rng.uniform(low, high) * height)))

    dry = places["grass"] if "grass" in places else places["sand"]
    if "water" in places:
        dry = dry & ~places["water"]
    for _ in range(int(rng.integers(1, 4))):
        place(dry, _person, 0.5, 0.75)
    if "road, route" in places:
        for _ in range(int(rng.integers(1, 3))):
            place(places["road, route"], _car, 0.28, 0.4)
    elif rng.random() < 0.5:
        place(dry, _car, 0.28, 0.4)
    if "water" in places:
        for _ in range(int(rng.integers(1, 3))):
            place(places["water"], _boat, 0.35, 0.55)
    for y, draw, x, h in sorted(_limit_overlap(things), key=lambda t: t[0]):
        draw(canvas, x, y, max(h, 0.12 * height))
    _clutter(canvas, int(rng.integers(0, 3)))


def _indoor(canvas: Canvas) -> None:
    rng, width, height = canvas.rng, canvas.width, canvas.height
    ceiling_y, floor_y = _room(canvas)
    wall_top, wall_h = max(0.0, ceiling_y), floor_y - max(0.0, ceiling_y)
    # On the wall, left to right without overlap: windows, paintings, a door (standing on the floor line).
    x = rng.uniform(0.02, 0.2) * width
    while x < width * 0.9:
        kind = rng.choice(["window", "painting", "door", "gap"], p=[0.3, 0.3, 0.15, 0.25])
        if kind == "door":
            h = rng.uniform(0.75, 0.95) * wall_h
            w = h * 0.45
            _door(canvas, x + w / 2, floor_y + 1, h)
        elif kind in ("window", "painting"):
            h = rng.uniform(0.35, 0.6) * wall_h
            w = h * 1.1
            y = wall_top + rng.uniform(0.15, 0.35) * wall_h + h
            (_window if kind == "window" else _painting)(canvas, x + w / 2, y, h)
        else:
            w = rng.uniform(0.05, 0.2) * width
        x += w + rng.uniform(0.03, 0.1) * width
    # Furniture and people on the floor, far ones first.
    furniture = [(_chair, (0.4, 0.55), 2), (_table, (0.25, 0.35), 1), (_lamp, (0.5, 0.7), 1),
                 (_cabinet, (0.35, 0.6), 1), (_person, (0.6, 0.85), 2)]
    things = []
    for draw, (low, high), most in furniture:
        for _ in range(int(rng.integers(0, most + 1))):
            y = rng.uniform(floor_y + 0.05 * (height - floor_y), height + 0.05 * height)
            scale = 0.75 + 0.25 * (y - floor_y) / max(1.0, height - floor_y)
            things.append((y, draw, rng.uniform(0.05, 0.95) * width, rng.uniform(low, high) * height * scale))
    for y, draw, x, h in sorted(_limit_overlap(things), key=lambda t: t[0]):
        draw(canvas, x, y, h)
    _clutter(canvas, int(rng.integers(0, 3)))


def toy_scene(seed: int, split: str, index: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One scene: (photo HxWx3, semantic HxW, instance HxWx3) uint8 in the ADE20K encodings, sides in SIZE_RANGE."""
    rng = np.random.default_rng([seed, list(SPLIT_PREFIX).index(split), index])
    height = int(rng.integers(SIZE_RANGE[0], SIZE_RANGE[1] + 1))
    width = int(rng.integers(max(SIZE_RANGE[0], round(height / MAX_ASPECT)),
                             min(SIZE_RANGE[1], round(height * MAX_ASPECT)) + 1))
    canvas = Canvas(rng, height, width)
    (_outdoor if rng.random() < 0.5 else _indoor)(canvas)
    photo, semantic, instance = canvas.annotations()
    # A little global light and colour variation between photos.
    photo = np.clip(photo * rng.uniform(0.85, 1.15) + rng.normal(0, 6, 3), 0, 255).astype(np.uint8)
    return photo, semantic, instance


def split_samples(split: str, count: int, seed: int = 0) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """The first `count` scenes of a split as (stem, photo, semantic, instance), what write_ade20k_zips takes,
    generated one at a time."""
    return ((f"{SPLIT_PREFIX[split]}_{i + 1:08d}", *toy_scene(seed, split, i)) for i in range(count))


def write_scenes(folder: str | os.PathLike, num_train: int, num_val: int, seed: int = 0) -> Path:
    """Writes the toy dataset (ADEChallengeData2016.zip + annotations_instance.zip) into `folder`."""
    from segdata.ade20k_writer import write_ade20k_zips

    folder = Path(folder)
    splits = {}
    if num_train:
        splits["training"] = split_samples("training", num_train, seed)
    if num_val:
        splits["validation"] = split_samples("validation", num_val, seed)
    write_ade20k_zips(folder, splits)
    return folder


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m segdata.scenes", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", required=True, help="folder for the two zips")
    parser.add_argument("--train", type=int, default=4000, help="training images")
    parser.add_argument("--val", type=int, default=60, help="validation images")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    write_scenes(args.out, args.train, args.val, args.seed)
    print(f"wrote {args.train} training and {args.val} validation scenes to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
