"""The app in a real browser (Debian's Chromium, headless, driven by Playwright): what a user clicks works."""

from __future__ import annotations

import io
import re
import shutil

import numpy as np
import pytest
from PIL import Image

from dump.folder import GT
from synthetic.folders import make_folder
from tests.app_runner import running_app
from viewer.filters import ImageFilter, filter_images
from viewer.index import load_folder

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run"]
TIMEOUT = 60_000  # ms; the machine is shared, first renders can be slow


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_folder(tmp_path_factory.mktemp("browser") / "out", n_images=8, models=("alpha", "beta", "gamma"),
                       size=(96, 128), seed=8)


@pytest.fixture(scope="module")
def page(folder):
    from playwright import sync_api

    assert shutil.which(CHROMIUM), "Debian's chromium is not installed (.ci/run installs it)"
    with running_app(folder) as url, sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page = browser.new_page(viewport={"width": 1500, "height": 1100})
        page.errors = []
        page.on("pageerror", lambda error: page.errors.append(str(error)))
        page.base_url = url
        yield page
        browser.close()


def shown_image(page) -> str:
    return page.locator("#vw-panels .vw-panels").get_attribute("data-image")


def wait_for_image(page, name: str) -> None:
    page.wait_for_selector(f'#vw-panels .vw-panels[data-image="{name}"]', timeout=TIMEOUT)


def test_a_user_session(page, folder):
    index = load_folder(folder)

    # A deep link opens its image.
    page.goto(f"{page.base_url}/?image=val_0002")
    wait_for_image(page, "val_0002")

    # Select a class and apply the filter: the list and the first image follow.
    class_id = max(index.classes.column, key=lambda c: (index.instance_counts[GT][:, index.classes.column[c]] > 0).sum()
                   if (index.instance_counts[GT][:, index.classes.column[c]] > 0).sum() < index.n_images else -1)
    expected = [index.images[p] for p in filter_images(index, ImageFilter(classes=(class_id,)))]
    assert 1 < len(expected) < index.n_images
    name = index.classes.names[class_id]
    page.locator("#vw-classes input").click()
    page.locator("#vw-classes input").fill(name)
    page.get_by_role("option", name=f"{name} ({class_id})", exact=True).click()
    page.keyboard.press("Escape")
    page.locator("#vw-filter").click()
    page.wait_for_function("n => document.querySelector('#vw-list-status').innerText.includes(n + ' images')",
                           arg=str(len(expected)), timeout=TIMEOUT)
    wait_for_image(page, expected[0])

    # Step to the next image with the arrow key, then with the button; the URL follows.
    page.locator("h2").first.click()  # focus the page, not a text field
    page.keyboard.press("ArrowRight")
    wait_for_image(page, expected[1])
    page.wait_for_function("n => location.search.includes('image=' + n)", arg=expected[1], timeout=TIMEOUT)
    page.locator("#vw-prev").click()
    wait_for_image(page, expected[0])
    page.locator("#vw-image-list").get_by_text(expected[-1], exact=True).first.click()  # a row of the list
    wait_for_image(page, expected[-1])

    # Click a pixel of the ground truth panel: the inspector lists every source at that pixel.
    view = page.locator("#vw-panels .vw-kind-labels .vw-view").first
    box = view.bounding_box()
    view.click(position={"x": box["width"] * 32.5 / 128, "y": box["height"] * 40.5 / 96})  # pixel (32, 40)
    page.wait_for_function("() => document.querySelector('#vw-inspector').innerText.includes('ground truth')",
                           timeout=TIMEOUT)
    inspector = page.locator("#vw-inspector").inner_text()
    for source in ("alpha", "beta", "gamma"):
        assert source in inspector
    assert re.search(r"\b(TP|FN|FP|void)", inspector)
    assert (page.locator("#vw-x input").input_value(), page.locator("#vw-y input").input_value()) == ("32", "40")
    marks = page.locator("#vw-panels .vw-mark")
    assert all(marks.nth(k).is_visible() for k in range(marks.count()))  # the point is marked in every panel

    # Zoom one panel with the wheel: every panel shows the same region.
    view.hover()
    page.mouse.wheel(0, -600)
    page.wait_for_function("() => +document.querySelector('#vw-panels .vw-panels').dataset.zoom > 1.5",
                           timeout=TIMEOUT)
    transforms = page.locator("#vw-panels .vw-stack").evaluate_all("els => els.map(e => e.style.transform)")
    assert len(transforms) >= 4 and len(set(transforms)) == 1 and "scale" in transforms[0]

    # Overlay view and the opacity slider: the colour layers follow the slider, no server round trip needed.
    page.get_by_label("Overlay on photo").check()
    page.wait_for_function("() => document.querySelector('#vw-panels .vw-panels').classList.contains('vw-overlay')",
                           timeout=TIMEOUT)
    slider = page.locator("#vw-opacity input[type=range]")
    slider.focus()
    for _ in range(6):  # 0.60 -> 0.30 in steps of 0.05
        page.keyboard.press("ArrowLeft")
    page.wait_for_function(
        "() => getComputedStyle(document.querySelector('#vw-panels .vw-fill')).opacity === '0.3'", timeout=TIMEOUT)

    # A screenshot of the page is not blank: photo, label colours and text are there.
    picture = np.asarray(Image.open(io.BytesIO(page.screenshot(full_page=True))).convert("RGB"))
    panel = np.asarray(Image.open(io.BytesIO(page.locator("#vw-panels .vw-grid").screenshot())).convert("RGB"))
    assert picture.std() > 20
    assert len(np.unique(panel.reshape(-1, 3), axis=0)) > 50
    assert page.errors == []


def test_the_errors_view_lists_images_and_opens_them(page, folder):
    from viewer.analysis import images_by_fix

    expected = images_by_fix(load_folder(folder), "gamma", "missed", top_n=20)["image"].tolist()
    assert len(expected) > 1
    page.goto(page.base_url)
    wait_for_image(page, "val_0000")
    page.get_by_role("tab", name="Dataset").click()
    page.get_by_role("tab", name="Errors").click()
    page.wait_for_function("() => document.querySelector('#vw-errors-summary').innerText.includes('gamma')",
                           timeout=TIMEOUT)
    assert "do not add up" in page.locator("#vw-errors-note").inner_text()

    # Click gamma's count of missed ground-truth segments: the images where they cost it most are listed.
    page.locator('#vw-errors-summary [data-testid="cell-2-0"]').wait_for(timeout=TIMEOUT)
    assert page.locator('#vw-errors-summary [data-testid="cell-2-0"]').inner_text().strip() == "gamma"
    assert "FN missed" in page.locator('#vw-errors-summary [data-testid="header-6"]').inner_text()
    page.locator('#vw-errors-summary [data-testid="cell-2-6"]').click()
    page.wait_for_function("n => document.querySelector('#vw-error-status').innerText.includes(n + ' images')",
                           arg=str(len(expected)), timeout=TIMEOUT)
    first = page.locator('#vw-error-images [data-testid="cell-0-0"]')
    assert first.inner_text().strip() == expected[0]

    # Open the second listed image: the Images tab shows it, with the listed images as its list.
    page.locator('#vw-error-images [data-testid="cell-1-0"]').click()
    wait_for_image(page, expected[1])
    assert page.locator("#vw-panels").is_visible()
    page.wait_for_function("n => document.querySelector('#vw-list-status').innerText.includes(n + ' images')",
                           arg=str(len(expected)), timeout=TIMEOUT)
    assert page.errors == []


def test_a_crafted_deep_link_shows_as_text(page):
    # Before: ?image= was rendered as Markdown: a heading, a clickable link and a remote image appeared.
    from urllib.parse import quote

    crafted = "# Heading [click](http://evil.example/x) ![pic](http://evil.example/i.png)"
    page.goto(f"{page.base_url}/?image={quote(crafted)}")
    page.wait_for_selector("#vw-list-status code", timeout=TIMEOUT)
    status = page.locator("#vw-list-status")
    assert "Heading [click](http://evil.example/x)" in status.inner_text()
    assert page.locator('a[href^="http://evil.example"]').count() == 0
    assert page.locator('img[src^="http://evil.example"]').count() == 0
    assert status.locator("h1").count() == 0

