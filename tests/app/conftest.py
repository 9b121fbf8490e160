"""The app's tests: the app's code run in this process against a test lake, signing in through
its form; the action tests' fixtures (the sandbox platform, accounts, the worker)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import pytest
from streamlit.testing.v1 import AppTest

from lakehouse import REPO_ROOT
from tests.actions.conftest import accounts, config, platform, sandbox, worker  # noqa: F401 - fixtures

HOME = str(REPO_ROOT / "app" / "Home.py")


@contextmanager
def app_process(environ: Mapping[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The app's code in this process reads ``environ``: its settings caches are fresh before
    and cleared after (the next test reads its own lake)."""
    from app import ui
    from lakehouse.config import settings as process_settings

    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    process_settings.cache_clear()
    ui.settings.cache_clear()
    try:
        yield
    finally:
        process_settings.cache_clear()
        ui.settings.cache_clear()


def signed_in(account: str, password: str) -> AppTest:
    """The app after signing in through its form (nothing is shown before)."""
    app = AppTest.from_file(HOME, default_timeout=60)
    app.run()
    assert not app.html and not app.metric  # nothing is shown before signing in
    app.text_input[0].input(account)
    app.text_input[1].input(password)
    app.button[0].click().run()
    return app
