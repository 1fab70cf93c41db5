"""Child servers never outlive their parent, and one data directory serves one server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from syllabus.services.runtime import EmbeddedNats
from syllabus.services.runtime._process import DirectoryInUse

CHILD = """
import sys, time
from pathlib import Path
from syllabus.services.runtime import EmbeddedNats
nats = EmbeddedNats(Path(sys.argv[1])).start()
print(nats.proc.pid, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie (exited, not yet reaped by init) counts as gone
    try:
        state = Path(f"/proc/{pid}/stat").read_text().split()[2]
    except (FileNotFoundError, IndexError):
        return False
    return state != "Z"


def test_nats_server_stops_when_its_parent_is_killed(tmp_path: Path):
    parent = subprocess.Popen([sys.executable, "-c", CHILD, str(tmp_path / "nats")],
                              stdout=subprocess.PIPE, text=True)
    try:
        nats_pid = int(parent.stdout.readline())
        assert _alive(nats_pid)
        parent.send_signal(signal.SIGKILL)  # only the python process
        parent.wait(timeout=10)
        deadline = time.monotonic() + 15
        while _alive(nats_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(nats_pid), "nats-server outlived the process that started it"
        # and the directory is free again for the rerun
        with EmbeddedNats(tmp_path / "nats", lock_timeout=5) as again:
            assert again.proc is not None and again.proc.poll() is None
    finally:
        if parent.poll() is None:
            parent.kill()


def test_a_second_server_on_the_same_directory_is_refused(tmp_path: Path):
    with EmbeddedNats(tmp_path / "nats") as first:
        second = EmbeddedNats(tmp_path / "nats", lock_timeout=0.5)
        with pytest.raises(DirectoryInUse, match=rf"in use by another nats-server \(pid {first.proc.pid}\)"):
            second.start()
        assert second.proc is None
        assert first.proc.poll() is None  # the first one is untouched
    # stopped: free again
    with EmbeddedNats(tmp_path / "nats", lock_timeout=0.5):
        pass
