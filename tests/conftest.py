"""Fixtures shared by the test modules: a synthetic output folder (`folder`), the app's index of it (`index`)
and the app serving it (`app`), built once per session and only read. A module that needs another folder
defines its own `folder` fixture; a test that damages a folder builds its own."""

from __future__ import annotations

import pytest

from synthetic.folders import make_folder
from tests.app_runner import running_app
from viewer.index import load_folder


@pytest.fixture(scope="session")
def folder(tmp_path_factory):
    """A complete output folder: 10 synthetic images, ground truth and three models of decreasing quality."""
    return make_folder(tmp_path_factory.mktemp("compared") / "out", n_images=10, seed=4)


@pytest.fixture(scope="session")
def index(folder):
    return load_folder(folder)


@pytest.fixture(scope="session")
def app(folder):
    """`python gradio_app.py` serving the folder; yields its URL."""
    with running_app(folder) as url:
        yield url
