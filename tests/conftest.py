"""Test plugins: the scripted model server (the one fake) and the real-process helpers."""

pytest_plugins = ["tests.fakes.fixtures", "tests.support"]
