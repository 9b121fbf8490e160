"""The app's tests use the action tests' fixtures (the sandbox platform, accounts, the worker)."""

from tests.actions.conftest import accounts, config, platform, sandbox, worker  # noqa: F401 - fixtures
