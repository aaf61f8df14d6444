"""Contained agents: every agent process Shipyard starts can run inside bubblewrap.

* :mod:`~backend.sandbox.spec` - :class:`SandboxSpec`, what one run may see and reach.
* :mod:`~backend.sandbox.probe` - :func:`probe`, whether bubblewrap (and socat) work here.
* :mod:`~backend.sandbox.policy` - :func:`sandbox_mode`, the ``sandbox`` setting meets the probe.
* :mod:`~backend.sandbox.bwrap` - :func:`wrap`, a command and a spec become a bwrap command.
* :mod:`~backend.sandbox.bridge` - the outside half of the network "model" bridge.

This package knows nothing of runners, plans or tasks (the runner core imports
it, never the other way round).
"""

from backend.sandbox.bwrap import SANDBOX_ENV, Wrapped, wrap
from backend.sandbox.policy import Decision, sandbox_mode
from backend.sandbox.probe import SandboxProbe, forget_probe, probe
from backend.sandbox.spec import SandboxSpec

__all__ = ["SANDBOX_ENV", "Decision", "SandboxProbe", "SandboxSpec", "Wrapped", "forget_probe", "probe",
           "sandbox_mode", "wrap"]
