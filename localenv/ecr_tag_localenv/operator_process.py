"""Run the operator as a child process (``ecr-tag-operator run``), the way a pod runs it: for the
end-to-end tests, fault tests, benchmarks and the demo."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType

from ecr_tag_localenv.processes import free_port, kill_process, stop_process

# The environment the operator's image sets (Dockerfile), so that tests and benchmarks run the operator
# as it is shipped. glibc gives each of the operator's many threads (kopf's handler pool) an arena of
# its own by default; two arenas hold about 12 MB less at 5,000 resources (benchmarks/convergence.py).
IMAGE_ENV = {"MALLOC_ARENA_MAX": "2"}


class OperatorStartError(RuntimeError):
    """The operator exited or never answered on its liveness endpoint; the message has its log tail."""


class OperatorProcess:
    """``start()`` waits until kopf's liveness endpoint answers; ``stop()`` ends it gracefully,
    ``kill()`` with SIGKILL (for fault tests). Restartable: each start is a new process."""

    def __init__(
        self,
        kubeconfig: Path,
        env: Mapping[str, str],
        *,
        args: Sequence[str] = (),
        log_path: Path | None = None,
        start_timeout: float = 60.0,
    ) -> None:
        self.kubeconfig = kubeconfig
        self.env = dict(env)
        self.args = list(args)
        self.start_timeout = start_timeout
        self.log_path = log_path or Path(tempfile.mkstemp(prefix="ecr-tag-operator-", suffix=".log")[1])
        self.metrics_port = free_port()
        self.liveness_port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> OperatorProcess:
        env = {
            **os.environ,
            **IMAGE_ENV,
            "KUBECONFIG": str(self.kubeconfig),
            "ECR_TAG_OPERATOR_METRICS_PORT": str(self.metrics_port),
            "ECR_TAG_OPERATOR_METRICS_HOST": "127.0.0.1",
            "PYTHONUNBUFFERED": "1",
            **self.env,
        }
        cmd = [
            sys.executable,
            "-m",
            "ecr_tag_operator.cli",
            "run",
            f"--liveness=http://127.0.0.1:{self.liveness_port}/healthz",
            *self.args,
        ]
        with self.log_path.open("ab") as log:
            log.write(f"--- start {self.starts + 1}: {' '.join(cmd[3:])}\n".encode())
            self.process = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        self.starts += 1
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OperatorStartError(f"the operator exited with {self.process.returncode}:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.liveness_port}/healthz", timeout=2):
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.kill()
        raise OperatorStartError(f"the operator did not become live in {self.start_timeout}s:\n{self.log_tail()}")

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL: no chance to clean up, as when a node dies."""
        if self.process is not None:
            kill_process(self.process)

    def stop(self, grace: float = 20.0) -> None:
        if self.process is not None:
            stop_process(self.process, grace)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def metrics(self) -> str:
        with urllib.request.urlopen(self.metrics_url, timeout=5) as resp:  # noqa: S310 - loopback only
            text: str = resp.read().decode()
            return text

    def __enter__(self) -> OperatorProcess:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
