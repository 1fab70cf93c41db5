"""For plugins that start a server of their own (the ``local`` teacher's llama.cpp): the
child must never outlive the process that started it (DESIGN.md). Standard library only."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from typing import Any

__all__ = ["parent_death_signal", "stop_process"]


def parent_death_signal(parent: int, sig: int = signal.SIGKILL) -> Any:
    """A ``preexec_fn`` that has Linux send the child ``sig`` when its parent dies
    (``prctl(PR_SET_PDEATHSIG)``), so a SIGKILLed parent leaves no server behind.

    The kernel ties the signal to the *thread* that forked, so start children from a
    thread that lives as long as the parent (the main thread, or a worker thread of an
    executor that lives as long as the event loop). Elsewhere than Linux: None."""
    if not sys.platform.startswith("linux"):
        return None

    def preexec() -> None:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, sig, 0, 0, 0)  # PR_SET_PDEATHSIG = 1
        if os.getppid() != parent:  # the parent died before prctl took effect
            os._exit(1)

    return preexec


def stop_process(process: subprocess.Popen | None, sig: int = signal.SIGTERM, *,
                 timeout: float = 10.0) -> None:
    """Ask a child server to stop with ``sig``; SIGKILL it if it has not stopped after
    ``timeout`` seconds. Nothing when it is None or already gone."""
    if process is None or process.poll() is not None:
        return
    process.send_signal(sig)
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)
