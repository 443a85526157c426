"""The app in a real browser on a folder of models of every task (the demo's panoptic and semantic models and a
panoptic one run as instance, dumped over toy scenes): semantic and instance panels with their error maps, the
score slider, and the Dataset tab's confusion matrix listing and opening images."""

from __future__ import annotations

import io
import shutil

import numpy as np
import pytest
from PIL import Image

import predict_dump
from dump import demo
from segdata import scenes
from tests.app_runner import running_app
from tests.test_app_browser import ARGS, CHROMIUM, TIMEOUT, wait_for_image
from viewer import dataset, events
from viewer.index import load_folder

MODELS = ["--model", f"pan={demo.DEMO_MODELS['toy-small']}", "--model", f"sem={demo.DEMO_SEMANTIC['toy-semantic']}",
          "--model", f"ins={demo.DEMO_MODELS['toy-base']}@instance"]


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    base = tmp_path_factory.mktemp("tasks")
    data = scenes.write_scenes(base / "scenes", num_train=0, num_val=3, seed=5)
    assert predict_dump.main(["--data", str(data), *MODELS, "--out", str(base / "out"), "--workers", "0"]) == 0
    return base / "out"


@pytest.fixture(scope="module")
def page(folder):
    sync_api = pytest.importorskip("playwright.sync_api")
    if not shutil.which(CHROMIUM):
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    with running_app(folder) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.base_url = url
        yield page
        browser.close()


def panel(page, title: str):
    return page.locator("#vw-panels figure", has=page.locator("figcaption", has_text=title)).first


def picture(locator) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(locator.screenshot())).convert("RGB"))


def test_semantic_and_instance_panels_with_their_error_maps(page):
    page.goto(f"{page.base_url}/?image=val_0001")
    wait_for_image(page, "val_0001")
    for title in ("sem (semantic)", "ins (instance)"):
        shown = panel(page, title)
        assert shown.locator("img.vw-fill").count() == 1, title  # a label map, not a note saying why not
        assert len(np.unique(picture(shown.locator(".vw-view")).reshape(-1, 3), axis=0)) > 3, title
    page.locator("#vw-errors input").check()
    page.wait_for_selector("#vw-panels figcaption:has-text('sem: errors (semantic)')", timeout=TIMEOUT)
    page.wait_for_selector("#vw-panels figcaption:has-text('ins: errors (instance, IoU 0.5)')", timeout=TIMEOUT)
    legends = page.locator("#vw-panels .vw-legend").all_inner_texts()
    assert any("Semantic error maps" in t and "wrong class" in t for t in legends)
    assert any("Instance error maps" in t and "FN: object missed" in t for t in legends)

    # The score slider: fewer instances drawn at a higher score.
    before = picture(panel(page, "ins (instance)").locator(".vw-view"))
    source = panel(page, "ins (instance)").locator("img.vw-fill").get_attribute("src")
    slider = page.locator("#vw-min-score input[type=range]")
    box = slider.bounding_box()
    slider.click(position={"x": box["width"] * 0.95, "y": box["height"] / 2})  # a release, as a user's drag ends
    page.wait_for_function("() => document.querySelector('#vw-min-score input[type=number]').value === '0.95'",
                           timeout=TIMEOUT)
    page.wait_for_function(
        "src => [...document.querySelectorAll('#vw-panels figure')].some(f => f.innerText.includes('ins (instance)') "
        "&& f.querySelector('img.vw-fill') && f.querySelector('img.vw-fill').src !== src)",
        arg=source, timeout=TIMEOUT)
    after = picture(panel(page, "ins (instance)").locator(".vw-view"))
    assert not np.array_equal(before, after)
    assert page.errors == []


def test_confusion_matrix_lists_and_opens_images(page, folder):
    index = load_folder(folder)
    top = dataset.top_confusions(index, "sem")
    expected = dataset.confusion_images(index, "sem", int(top["gt id"].iloc[0]), int(top["predicted id"].iloc[0]))
    page.goto(page.base_url)
    wait_for_image(page, "val_0000")
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("tab", name="Confusion").click()
    page.wait_for_function("() => document.querySelector('#vw-confusion-status').innerText.includes('pixels')",
                           timeout=TIMEOUT)
    page.locator('#vw-confusion-top [data-testid="cell-0-0"]').click()
    page.wait_for_function("n => document.querySelector('#vw-confusion-images-status').innerText.includes(n + ' images')",
                           arg=str(len(expected)), timeout=TIMEOUT)
    first = page.locator('#vw-confusion-images [data-testid="cell-0-0"]')
    assert first.inner_text().strip() == expected["image"].iloc[0]
    first.click()
    wait_for_image(page, expected["image"].iloc[0])
    assert page.errors == []


def test_a_click_on_a_heatmap_cell_lists_its_images(page, folder):
    """A click on a cell of the seaborn heatmap (a picture) lists that confusion's images, also a cell that is
    not among the largest confusions offered by the picker."""
    index = load_folder(folder)
    grid = events.confusion_page(index, {"positions": None}, "sem", "all", 20).grid
    matrix = dataset.confusion_matrix(index, "sem")
    offered = {(int(g), int(p)) for g, p in dataset.top_confusions(index, "sem")[["gt id", "predicted id"]].to_numpy()}
    cells = [(r, c) for r, gt_class in enumerate(grid.rows) for c, column in enumerate(grid.columns)
             if column != gt_class and matrix[gt_class, column] > 0]
    def confusion(cell):
        return grid.rows[cell[0]], (-1 if cell[1] == len(grid.columns) - 1 else grid.columns[cell[1]])

    # The smallest confusion of the heatmap that the picker does not offer.
    r, c = min((cell for cell in cells if confusion(cell) not in offered),
               key=lambda cell: matrix[grid.rows[cell[0]], grid.columns[cell[1]]])
    gt_class, predicted = confusion((r, c))
    expected = dataset.confusion_images(index, "sem", gt_class, predicted)
    page.goto(page.base_url)
    wait_for_image(page, "val_0000")
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("tab", name="Confusion").click()
    picture = page.locator("#vw-confusion-heatmap img")
    picture.wait_for(timeout=TIMEOUT)
    picture.scroll_into_view_if_needed()
    # Where the cell's centre is on screen: the picture is scaled to fit its box and centred in it, as Gradio
    # maps a click back to the picture's pixels.
    left, top, right, bottom = grid.box
    x, y = left + (c + 0.5) * (right - left) / len(grid.columns), top + (r + 0.5) * (bottom - top) / len(grid.rows)
    shown = picture.evaluate("i => { const b = i.getBoundingClientRect(); "
                             "return [b.left, b.top, b.width, b.height, i.naturalWidth, i.naturalHeight]; }")
    box_left, box_top, width, height, natural_width, natural_height = shown
    scale = min(width / natural_width, height / natural_height, 1)
    page.mouse.click(box_left + (width - natural_width * scale) / 2 + x * scale,
                     box_top + (height - natural_height * scale) / 2 + y * scale)
    what = f"{dataset.confusion_label(index, gt_class)} predicted as {dataset.confusion_label(index, predicted)}"
    page.wait_for_function("t => document.querySelector('#vw-confusion-images-status').innerText.includes(t)",
                           arg=what, timeout=TIMEOUT)
    assert f"{len(expected)} images" in page.locator("#vw-confusion-images-status").inner_text()
    first = page.locator('#vw-confusion-images [data-testid="cell-0-0"]')
    assert first.inner_text().strip() == expected["image"].iloc[0]
    assert page.errors == []


def test_the_errors_view_shows_tide_and_compares_ap(page, folder):
    """Models scored as instances get TIDE error types and calibration on the Errors view, and a click compares
    A and B in mask AP with bootstrap intervals."""
    index = load_folder(folder)
    table, _ = events.instance_comparison(index, events.DatasetQuery(["pan", "ins"]))
    page.goto(page.base_url)
    wait_for_image(page, "val_0000")
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("tab", name="Errors").click()
    page.locator('#vw-tide [data-testid="cell-1-0"]').wait_for(timeout=TIMEOUT)
    models = [page.locator(f'#vw-tide [data-testid="cell-{row}-0"]').inner_text().strip() for row in (0, 1)]
    assert models == ["pan", "ins"] and "sem" not in page.locator("#vw-tide").inner_text()
    assert "hotcoco's TIDE" in page.locator("#vw-tide-note").inner_text()
    page.locator("#vw-ap-compare").click()
    page.wait_for_function("() => document.querySelector('#vw-ap-compare-status').innerText.includes('against')",
                           timeout=TIMEOUT)
    assert "pan (A) against ins (B)" in page.locator("#vw-ap-compare-status").inner_text()
    shown = page.locator("#vw-ap-compare-table").inner_text()
    assert "AP50" in shown and f"{table.set_index('metric').loc['AP50', 'A − B']:.4f}".rstrip("0") in shown
    assert page.errors == []
