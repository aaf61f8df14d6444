"""Test plugins: the scripted model server (the one fake) and the real-process helpers."""

import os

pytest_plugins = ["tests.fakes.fixtures", "tests.support"]

# Most tests coordinate with their agents through files under the test's tmp_path (gates, hold
# points, canaries), which a sandboxed agent cannot see: the suite runs unsandboxed by default,
# and the containment tests (tests/test_containment.py, tests/test_sandbox.py) ask for the
# sandbox themselves. Set here, not inherited, so a developer's own SHIPYARD_SANDBOX never leaks in.
os.environ["SHIPYARD_SANDBOX"] = "off"
