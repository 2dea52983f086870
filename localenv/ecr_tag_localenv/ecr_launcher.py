"""Start the ECR emulator in a child process and stop it again (used by the pytest plugin and benchmarks)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ecr_tag_localenv.ecr_control import EmulatorControl
from ecr_tag_localenv.oci_address import DEFAULT_REGION, registry_host

REGION = DEFAULT_REGION
DUMMY_ACCESS_KEY_ID = "testing"
DUMMY_SECRET_ACCESS_KEY = "testing"  # noqa: S105 - moto's conventional dummy credentials


_PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


class EmulatorStartError(RuntimeError):
    """The emulator process exited or never became healthy; the message carries its stderr."""


@dataclass(frozen=True)
class RunningEmulator:
    endpoint_url: str
    control: EmulatorControl
    process: subprocess.Popen[bytes]
    log_path: Path
    env: Mapping[str, str] = field(default_factory=dict)
    """Environment a child process needs to use the emulator (endpoints, dummy credentials, region)."""

    @property
    def port(self) -> int:
        return int(self.endpoint_url.rsplit(":", 1)[1])

    @property
    def registry(self) -> str:
        """``127.0.0.1:PORT``: the OCI registry of the default account and region, for crane/oras/cosign."""
        return f"127.0.0.1:{self.port}"

    def registry_for(self, account: str, region: str = REGION) -> str:
        """The OCI registry of another account or region (a Host-header name, see :mod:`.oci_address`)."""
        return registry_host(account, region, self.registry)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


def client_env(endpoint_url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL_ECR": endpoint_url,
        "AWS_ENDPOINT_URL_STS": endpoint_url,
        "AWS_ENDPOINT_URL_IAM": endpoint_url,
        "AWS_ACCESS_KEY_ID": DUMMY_ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": DUMMY_SECRET_ACCESS_KEY,
        "AWS_DEFAULT_REGION": REGION,
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _stop(process: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=grace)


@contextmanager
def start_emulator(
    extra_args: Sequence[str] = (),
    env: Mapping[str, str] | None = None,
    startup_timeout: float = 60.0,
    log_dir: Path | None = None,
) -> Iterator[RunningEmulator]:
    """Run ``python -m ecr_tag_localenv.ecr_emulator`` on a free loopback port until the block ends.

    The server picks the port itself (``--port 0``) and reports it in a file, so parallel runs cannot race
    for a port. ``env`` is added to a copy of this process's environment; ``os.environ`` is not touched.
    """
    with tempfile.TemporaryDirectory(prefix="ecr-emulator-", dir=log_dir) as tmp:
        port_file = Path(tmp) / "port"
        log_path = Path(tmp) / "emulator.log"
        child_env = {**os.environ, **(env or {})}
        # Make the child import this same copy of the package (e.g. a source checkout not installed).
        child_env["PYTHONPATH"] = os.pathsep.join(p for p in [_PACKAGE_ROOT, child_env.get("PYTHONPATH", "")] if p)
        with log_path.open("wb") as log_file:
            process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ecr_tag_localenv.ecr_emulator",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    "0",
                    "--port-file",
                    str(port_file),
                    *extra_args,
                ],
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                env=child_env,
            )
        try:
            endpoint_url = _wait_until_serving(process, port_file, log_path, startup_timeout)
            yield RunningEmulator(
                endpoint_url=endpoint_url,
                control=EmulatorControl(endpoint_url),
                process=process,
                log_path=log_path,
                env=client_env(endpoint_url),
            )
        finally:
            _stop(process)


def _wait_until_serving(process: subprocess.Popen[bytes], port_file: Path, log_path: Path, timeout: float) -> str:
    deadline = time.monotonic() + timeout
    control: EmulatorControl | None = None
    while True:
        if process.poll() is not None:
            raise EmulatorStartError(
                f"ECR emulator exited with code {process.returncode} during start-up:\n"
                f"{log_path.read_text(errors='replace')}"
            )
        if control is None and port_file.exists():
            control = EmulatorControl(f"http://127.0.0.1:{int(port_file.read_text())}", timeout=2.0)
        if control is not None and control.healthy():
            return control.endpoint_url
        if time.monotonic() > deadline:
            _stop(process)
            raise EmulatorStartError(
                f"ECR emulator not serving after {timeout}s:\n{log_path.read_text(errors='replace')}"
            )
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=0.05)  # poll interval that also notices an early exit at once
