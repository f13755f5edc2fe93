"""Killing a job the way a scheduler or the OOM killer does (SIGKILL: no handler, no cleanup), at a chosen
point of its progress, for the resume tests."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

KILL_TIMEOUT_S = 600


def kill_once(proc: subprocess.Popen, appeared: Callable[[], bool], what: str, log: Path) -> None:
    """SIGKILL ``proc`` as soon as ``appeared()`` is true (polled every few milliseconds). Fails if the process
    ends by itself first (it finished before the kill could land: the test would prove nothing) or nothing
    appears within ``KILL_TIMEOUT_S``."""
    deadline = time.monotonic() + KILL_TIMEOUT_S
    while not appeared():
        if proc.poll() is not None:
            pytest.fail(f"the process ended (exit {proc.returncode}) before {what} appeared: "
                        f"{log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            proc.wait()
            pytest.fail(f"no {what} after {KILL_TIMEOUT_S} s")
        time.sleep(0.002)
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=60) == -signal.SIGKILL
