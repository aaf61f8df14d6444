"""Reading what changed between two commits (the task diff, changed paths)."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading

from backend.git.command import (
    GitError,
    decode,
    decode_path,
    git_argv,
    safe_env,
    short_sha,
    stderr_tail,
)
from backend.git.refs import RefOps


class DiffOps(RefOps):
    """Diffs between revisions; read-only, so no lock."""

    def diff(self, base: str, tip: str, max_bytes: int = 2_000_000) -> str:
        """``git diff base...tip`` (changes on tip since the merge base), capped at ``max_bytes``.

        Read as a stream so a huge diff never sits in memory whole; when the cap is
        hit the text ends at a line boundary and a note says it was cut.
        """
        b = self.require_commit(base, "revision")
        t = self.require_commit(tip, "revision")
        argv = git_argv(
            "diff", "--no-color", "--src-prefix=a/", "--dst-prefix=b/", f"{b}...{t}", "--",
        )
        proc = subprocess.Popen(
            argv, cwd=self.root, env=safe_env(argv, cwd=self.root, timeout=self.timeout),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
        assert proc.stdout is not None and proc.stderr is not None
        chunks: list[bytes] = []
        size = 0
        truncated = False
        timed_out = threading.Event()

        def stop() -> None:
            timed_out.set()
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)

        watchdog = threading.Timer(self.timeout, stop)
        watchdog.daemon = True
        watchdog.start()
        try:
            while True:
                chunk = proc.stdout.read(65536)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    truncated = True
                    break
        finally:
            watchdog.cancel()
            if truncated or proc.poll() is None:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
            err = proc.stderr.read()
            proc.stdout.close()
            proc.stderr.close()
            proc.wait()
        data = b"".join(chunks)
        if timed_out.is_set() and not truncated:
            raise GitError(
                f"git diff {base}...{tip} did not finish within {self.timeout:.0f} seconds "
                "and was stopped."
            )
        if not truncated and proc.returncode != 0:
            raise GitError(
                f"Could not diff {base}...{tip}: git diff exited with {proc.returncode}: "
                f"{stderr_tail(decode(err))}",
                returncode=proc.returncode, stderr=decode(err), argv=argv,
            )
        if not truncated:
            return decode(data)
        cut = data[:max_bytes]
        newline = cut.rfind(b"\n")
        if newline > 0:
            cut = cut[: newline + 1]
        return decode(cut) + (
            f"\n[diff truncated by Shipyard: showing the first {len(cut):,} bytes; the full "
            f"diff is larger than {max_bytes:,} bytes. Run 'git diff {base}...{tip}' to see it "
            "all.]\n"
        )

    def changed_files(self, base: str, tip: str) -> list[str]:
        """Paths changed on ``tip`` since its merge base with ``base``.

        Renames count as a deletion plus an addition, so both names appear.
        """
        b = self.require_commit(base, "revision")
        t = self.require_commit(tip, "revision")
        proc = self.run_git(
            "diff", "--name-only", "-z", "--no-renames", "--no-ext-diff", f"{b}...{t}", "--",
            what=f"list the files changed in {base}...{tip}",
        )
        return [decode_path(p) for p in proc.stdout.split(b"\0") if p]

    def diff_stat(self, base: str, tip: str, width: int = 120) -> str:
        """``git diff --stat base...tip``: what changed on ``tip``, one line per file (re-plan context)."""
        b = self.require_commit(base, "revision")
        t = self.require_commit(tip, "revision")
        proc = self.run_git("diff", f"--stat={width}", "--no-ext-diff", f"{b}...{t}", "--",
                         what=f"summarise the changes in {base}...{tip}")
        return decode(proc.stdout).rstrip()

    def diff_names(self, old: str, new: str, diff_filter: str) -> list[str]:
        proc = self.run_git(
            "diff", "--name-only", "-z", "--no-renames", f"--diff-filter={diff_filter}",
            old, new, "--",
            what=f"compare {short_sha(old)} with {short_sha(new)}",
        )
        return [decode_path(p) for p in proc.stdout.split(b"\0") if p]

