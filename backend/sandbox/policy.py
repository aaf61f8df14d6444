"""Whether runs are sandboxed here: the ``sandbox`` setting meets what :func:`probe` found.

``auto`` sandboxes when bubblewrap works and otherwise runs unsandboxed with a
warning (a laptop without bubblewrap still works); ``required`` refuses to run
anything unsandboxed; ``off`` never sandboxes. The doctor and the stages ask
the same function, so what ``shipyard doctor`` says is what runs do.
"""

from __future__ import annotations

from dataclasses import dataclass

from backend.sandbox.probe import INSTALL_SOCAT, SandboxProbe

SANDBOX_SETTINGS: tuple[str, ...] = ("auto", "required", "off")


@dataclass(frozen=True)
class Decision:
    """What to do with a run: ``sandbox`` it, or not; ``refusal`` (one sentence) means do not run at all.

    ``warning`` is set when runs go unsandboxed although a sandbox was wanted
    (``auto`` without a working bubblewrap). ``summary`` is one line for the doctor.
    """

    sandbox: bool
    refusal: str | None
    warning: str | None
    summary: str

    @property
    def level(self) -> str:
        """The doctor's level: error when runs are refused, warn when unsandboxed by necessity."""
        if self.refusal:
            return "error"
        return "warn" if self.warning else "ok"


def sandbox_mode(setting: str, found: SandboxProbe, network: str = "model") -> Decision:
    """The decision for ``setting`` (auto, required, off) given the probe and the network mode.

    Network "model" also needs socat; without it the sandbox counts as not
    working, because a run whose model is unreachable would only fail later.
    """
    if setting not in SANDBOX_SETTINGS:
        raise ValueError(f"unknown sandbox setting {setting!r}: choose auto, required or off")
    if setting == "off":
        return Decision(False, None, None, "runs are not sandboxed (sandbox: off)")
    problem: str | None = None
    fix = found.fix
    if not found.works:
        problem = found.reason or "bubblewrap does not work here"
    elif network == "model" and found.socat is None:
        problem, fix = "socat is not installed (network 'model' needs it)", INSTALL_SOCAT
    if problem is None:
        net = "only the model is reachable" if network == "model" else "host network"
        return Decision(True, None, None, f"runs are sandboxed with bubblewrap ({found.bwrap}; {net})")
    because = f"{problem} ({fix})" if fix else problem
    if setting == "required":
        return Decision(False, f"runs must be sandboxed (sandbox: required) but {because}", None,
                        f"runs cannot start: {because}")
    warning = f"runs are not sandboxed: {because}"
    return Decision(False, None, warning, warning)
