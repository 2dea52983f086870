"""Child processes of the local environment: stopping one, and a free loopback port for it to use."""

from __future__ import annotations

import socket
import subprocess


def stop_process(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM, SIGKILL if it is still running after ``grace`` seconds, and reap it. Idempotent."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        kill_process(process)


def kill_process(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL (no chance to clean up, as when a node dies) and reap it."""
    if process.poll() is None:
        process.kill()
        process.wait(timeout=30)


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now.

    Racy in principle (free now, not necessarily when the child binds it), as in envtest; a lost race
    shows up as a start-up failure with "address already in use" in the child's log.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
