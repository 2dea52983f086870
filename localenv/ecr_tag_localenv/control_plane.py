"""A real Kubernetes control plane (etcd + kube-apiserver) on 127.0.0.1, the way envtest runs one.

No kubelet, scheduler or controller-manager runs: objects are stored and served, RBAC is enforced,
but nothing acts on them (namespaces stay Terminating, pods never start). That is all an operator
that only watches custom resources needs, and it starts in seconds without Docker.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import fcntl
import http.client
import ipaddress
import json
import os
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import IO, Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from ecr_tag_localenv.processes import free_port, stop_process

__all__ = [
    "BIN_DIR_ENV",
    "BUILD_COMMAND",
    "REQUIRED_BINARIES",
    "BinariesError",
    "ControlPlane",
    "ControlPlaneError",
    "KubeCluster",
    "KubectlError",
    "ensure_binaries",
    "expected_bin_dir",
    "pinned_versions",
    "repo_root",
]

BIN_DIR_ENV = "ECR_TAG_OPERATOR_BIN_DIR"
BUILD_COMMAND = "bash hack/build-control-plane.sh"
REQUIRED_BINARIES = ("kube-apiserver", "etcd", "kubectl", "helm")

_BUILD_SCRIPT = Path("hack") / "build-control-plane.sh"


class BinariesError(RuntimeError):
    """The control-plane binaries are missing or could not be built."""


class ControlPlaneError(RuntimeError):
    """etcd or kube-apiserver failed to start."""


class KubectlError(subprocess.CalledProcessError):
    """A kubectl call failed; unlike CalledProcessError its message carries kubectl's stderr."""

    def __str__(self) -> str:
        stderr = (self.stderr or "").strip()
        return f"{super().__str__()}\n{stderr}" if stderr else super().__str__()


def repo_root() -> Path:
    """The checkout this package lives in (localenv/ecr_tag_localenv/ -> two levels up)."""
    return Path(__file__).resolve().parents[2]


# --------------------------------------------------------------------------------------------------
# Binaries


def _script_default(script: str, var: str) -> str:
    # The script is the single source of the pinned versions; read its `VAR="${VAR:-default}"` lines
    # so the expected directory can be known without running (and possibly building).
    match = re.search(rf'^{var}="\$\{{{var}:-([^}}]+)\}}"', script, re.MULTILINE)
    if match is None:
        raise BinariesError(f"cannot find the default of {var} in {_BUILD_SCRIPT}")
    return os.environ.get(var) or match.group(1)


def _cache_root() -> Path:
    explicit = os.environ.get("ECR_TAG_OPERATOR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ecr-tag-operator"


def pinned_versions() -> dict[str, str]:
    """The versions the build script pins (after its env overrides): keys kubernetes, etcd, helm."""
    script = (repo_root() / _BUILD_SCRIPT).read_text()
    return {
        "kubernetes": _script_default(script, "K8S_VERSION"),
        "etcd": _script_default(script, "ETCD_VERSION"),
        "helm": _script_default(script, "HELM_VERSION"),
    }


def expected_bin_dir() -> Path:
    """Where `hack/build-control-plane.sh` puts (or has put) the binaries for the pinned versions."""
    v = pinned_versions()
    return _cache_root() / "bin" / f"k8s-{v['kubernetes']}_etcd-{v['etcd']}_helm-{v['helm']}"


def _missing(bin_dir: Path) -> list[str]:
    return [name for name in REQUIRED_BINARIES if not os.access(bin_dir / name, os.X_OK)]


@contextlib.contextmanager
def _build_lock() -> Iterator[None]:
    # The script wipes its work directory before building: two concurrent runs (parallel test
    # workers, a test run plus the demo) must take turns.
    root = _cache_root()
    root.mkdir(parents=True, exist_ok=True)
    with (root / "build.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def ensure_binaries(*, build: bool = True, progress: Callable[[str], None] | None = None) -> Path:
    """Return the directory holding kube-apiserver, etcd, kubectl and helm.

    `$ECR_TAG_OPERATOR_BIN_DIR` wins when set. Otherwise the build script runs (a no-op apart from
    the version check when its cache is warm) and its stderr is streamed line by line to `progress`.
    With `build=False` nothing is built and a missing binary is an error saying how to build it.
    """
    explicit = os.environ.get(BIN_DIR_ENV)
    if explicit:
        bin_dir = Path(explicit)
        missing = _missing(bin_dir)
        if missing:
            raise BinariesError(
                f"{BIN_DIR_ENV}={bin_dir} lacks {', '.join(missing)}; unset it to use the cache, "
                f"or build them with `{BUILD_COMMAND}` and point {BIN_DIR_ENV} at the directory it prints"
            )
        return bin_dir

    if not build:
        bin_dir = expected_bin_dir()
        missing = _missing(bin_dir)
        if missing:
            raise BinariesError(
                f"missing {', '.join(missing)} in {bin_dir}: build them with `{BUILD_COMMAND}` "
                "from the repository root (needs Go; about 20 minutes on two cores the first time)"
            )
        return bin_dir

    root = repo_root()
    tail: deque[str] = deque(maxlen=40)
    with _build_lock():
        proc = subprocess.Popen(
            ["bash", str(root / _BUILD_SCRIPT)],
            cwd=root,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        if proc.stderr is None or proc.stdout is None:  # pragma: no cover - both are PIPE
            raise BinariesError("no pipes to the build script")
        # stdout is one line (the directory) printed at the end, so reading stderr first cannot
        # deadlock on a full stdout pipe.
        for line in proc.stderr:
            line = line.rstrip("\n")
            tail.append(line)
            if progress is not None:
                progress(line)
        stdout = proc.stdout.read()
        rc = proc.wait()
    if rc != 0:
        # The script silences its first go call, so a missing toolchain leaves no output at all.
        hint = " Go is not on PATH: install Go (the version k8s.io/kubernetes needs)." if not shutil.which("go") else ""
        raise BinariesError(
            f"`{BUILD_COMMAND}` failed with exit code {rc}.{hint} Run it by hand to see the full output. "
            "Last lines:\n" + "\n".join(tail)
        )
    lines = stdout.strip().splitlines()
    if not lines:
        raise BinariesError(f"`{BUILD_COMMAND}` printed no directory")
    bin_dir = Path(lines[-1])
    missing = _missing(bin_dir)
    if missing:
        raise BinariesError(f"`{BUILD_COMMAND}` succeeded but {bin_dir} lacks {', '.join(missing)}")
    return bin_dir


# --------------------------------------------------------------------------------------------------
# Any cluster reachable through a kubeconfig


class KubeCluster:
    """A cluster driven through kubectl and one kubeconfig file.

    Used as is for an existing cluster (USE_EXISTING_CLUSTER); ControlPlane extends it.
    """

    def __init__(self, kubeconfig_path: Path, kubectl_path: Path) -> None:
        self.kubeconfig_path = kubeconfig_path
        self.kubectl_path = kubectl_path
        self._server_url: str | None = None

    @property
    def server_url(self) -> str:
        if self._server_url is None:
            self._server_url = self.kubectl(
                "config", "view", "--minify", "-o", "jsonpath={.clusters[0].cluster.server}"
            ).stdout.strip()
        return self._server_url

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # mirrors subprocess.run
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; with check=True a non-zero exit raises KubectlError."""
        cmd = [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig_path), *args]
        result = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=timeout, check=False)
        if check and result.returncode != 0:
            raise KubectlError(result.returncode, cmd, result.stdout, result.stderr)
        return result

    def install_crds(self, path: Path, *, timeout: float = 60.0) -> None:
        """Apply a CRD file (or a directory of them) and wait until every CRD in it is Established."""
        self.kubectl("apply", "-f", str(path), timeout=timeout)
        self.kubectl(
            "wait",
            "--for=condition=Established",
            "-f",
            str(path),
            f"--timeout={int(timeout)}s",
            timeout=timeout + 10,
        )

    def service_account_kubeconfig(self, name: str, namespace: str, path: Path, *, duration: str = "1h") -> Path:
        """Write a kubeconfig at `path` that authenticates as ServiceAccount `namespace/name`.

        The token comes from the TokenRequest API (`kubectl create token`), as a pod's projected
        token would; the ServiceAccount must exist. Returns `path`.
        """
        token = self.kubectl("create", "token", name, "-n", namespace, f"--duration={duration}").stdout.strip()
        admin = json.loads(self.kubectl("config", "view", "--raw", "--minify", "--flatten", "-o", "json").stdout)
        cluster = dict(admin["clusters"][0]["cluster"])
        user = f"system:serviceaccount:{namespace}:{name}"
        _write_kubeconfig(path, cluster=cluster, user_name=user, user={"token": token}, namespace=namespace)
        return path


def _write_kubeconfig(
    path: Path, *, cluster: dict[str, Any], user_name: str, user: dict[str, str], namespace: str = "default"
) -> None:
    # JSON is valid YAML, and every kubeconfig loader accepts it: no YAML dependency needed.
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "local", "cluster": cluster}],
        "users": [{"name": user_name, "user": user}],
        "contexts": [{"name": "local", "context": {"cluster": "local", "user": user_name, "namespace": namespace}}],
        "current-context": "local",
        "preferences": {},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    # Holds credentials: readable by the owner only.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(config, f, indent=2)


# --------------------------------------------------------------------------------------------------
# Certificates


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _issue(
    subject: x509.Name,
    key: ec.EllipticCurvePrivateKey,
    issuer: tuple[x509.Name, ec.EllipticCurvePrivateKey] | None,
    extensions: Sequence[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    now = dt.datetime.now(dt.UTC)
    issuer_name, issuer_key = issuer if issuer else (subject, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        # Back-dated a little so a clock a few seconds off does not reject a fresh certificate.
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=7))
    )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


@dataclass(frozen=True)
class _Certs:
    dir: Path
    ca_cert: Path
    serving_cert: Path
    serving_key: Path
    admin_cert: Path
    admin_key: Path
    sa_public_key: Path
    sa_private_key: Path


def _generate_certs(cert_dir: Path) -> _Certs:
    # ECDSA P-256: key generation takes microseconds where RSA takes tens of milliseconds.
    cert_dir.mkdir(mode=0o700, parents=True)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ecr-tag-operator-local-ca")])
    ca = _issue(
        ca_name,
        ca_key,
        None,
        [
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (x509.KeyUsage(False, False, False, False, False, True, True, False, False), True),
        ],
    )
    server_key = ec.generate_private_key(ec.SECP256R1())
    server = _issue(
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kube-apiserver")]),
        server_key,
        (ca_name, ca_key),
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (
                x509.SubjectAlternativeName(
                    [
                        x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                        # The first address of --service-cluster-ip-range, as in-cluster clients see it.
                        x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                        x509.DNSName("localhost"),
                        x509.DNSName("kubernetes"),
                        x509.DNSName("kubernetes.default"),
                        x509.DNSName("kubernetes.default.svc"),
                    ]
                ),
                False,
            ),
        ],
    )
    admin_key = ec.generate_private_key(ec.SECP256R1())
    admin = _issue(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:masters"),
                x509.NameAttribute(NameOID.COMMON_NAME, "admin"),
            ]
        ),
        admin_key,
        (ca_name, ca_key),
        [
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), False),
        ],
    )
    sa_key = ec.generate_private_key(ec.SECP256R1())
    certs = _Certs(
        dir=cert_dir,
        ca_cert=cert_dir / "ca.crt",
        serving_cert=cert_dir / "apiserver.crt",
        serving_key=cert_dir / "apiserver.key",
        admin_cert=cert_dir / "admin.crt",
        admin_key=cert_dir / "admin.key",
        sa_public_key=cert_dir / "sa.pub",
        sa_private_key=cert_dir / "sa.key",
    )
    certs.ca_cert.write_bytes(_pem_cert(ca))
    certs.serving_cert.write_bytes(_pem_cert(server))
    certs.serving_key.write_bytes(_pem_key(server_key))
    certs.admin_cert.write_bytes(_pem_cert(admin))
    certs.admin_key.write_bytes(_pem_key(admin_key))
    certs.sa_private_key.write_bytes(_pem_key(sa_key))
    certs.sa_public_key.write_bytes(
        sa_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return certs


# --------------------------------------------------------------------------------------------------
# Processes


def _die_with_parent() -> None:
    # Runs in the child between fork and exec: if the test runner is killed outright (SIGKILL,
    # OOM) the kernel kills etcd and kube-apiserver too instead of leaving them orphaned.
    # Caveat: it fires when the *thread* that started them exits, so start from a long-lived thread.
    import ctypes

    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGKILL)


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        with path.open(errors="replace") as f:
            return "".join(deque(f, maxlen=lines))
    except OSError:
        return "(no log)"


@dataclass
class _Resources:
    """What ControlPlane must release; kept apart from it so a weakref finalizer can hold it."""

    tmp_dir: Path
    processes: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)
    log_files: list[IO[bytes]] = field(default_factory=list)
    stop_grace: float = 15.0

    def release(self) -> None:
        # Reverse start order: kube-apiserver before the etcd it writes to.
        while self.processes:
            stop_process(self.processes.pop()[1], self.stop_grace)
        while self.log_files:
            self.log_files.pop().close()
        shutil.rmtree(self.tmp_dir, ignore_errors=True)


class ControlPlane(KubeCluster):
    """etcd and kube-apiserver on free 127.0.0.1 ports, with RBAC, TLS and ServiceAccount tokens.

    Use as a context manager, or call start() and stop(); stop() also runs at interpreter exit or
    when the object is collected, so a failed test cannot leave the processes behind.
    """

    def __init__(
        self,
        bin_dir: Path,
        *,
        start_timeout: float = 60.0,
        stop_timeout: float = 15.0,
        extra_apiserver_args: Sequence[str] = (),
    ) -> None:
        self.bin_dir = bin_dir
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.extra_apiserver_args = tuple(extra_apiserver_args)
        self.startup_seconds: float | None = None
        self._resources: _Resources | None = None
        self._finalizer: weakref.finalize | None = None  # type: ignore[type-arg]
        # What restart() reuses: the same certificates, etcd ports (hence data directory) and apiserver port.
        self._certs: _Certs | None = None
        self._etcd_ports: tuple[int, int] | None = None
        self._apiserver_port: int | None = None
        super().__init__(kubeconfig_path=Path(), kubectl_path=bin_dir / "kubectl")

    # -- lifecycle ---------------------------------------------------------------------------------

    def __enter__(self) -> ControlPlane:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._resources is not None

    @property
    def pids(self) -> dict[str, int]:
        """PIDs of the running processes by binary name (empty once stopped)."""
        if self._resources is None:
            return {}
        return {name: proc.pid for name, proc in self._resources.processes}

    @property
    def tmp_dir(self) -> Path:
        if self._resources is None:
            raise ControlPlaneError("control plane is not running")
        return self._resources.tmp_dir

    def start(self) -> None:
        if self._resources is not None:
            raise ControlPlaneError("control plane already started")
        missing = [n for n in ("etcd", "kube-apiserver", "kubectl") if not os.access(self.bin_dir / n, os.X_OK)]
        if missing:
            raise BinariesError(f"missing {', '.join(missing)} in {self.bin_dir}: build with `{BUILD_COMMAND}`")
        began = time.monotonic()
        res = _Resources(tmp_dir=Path(tempfile.mkdtemp(prefix="ecr-tag-operator-cp-")), stop_grace=self.stop_timeout)
        self._resources = res
        self._finalizer = weakref.finalize(self, res.release)
        try:
            deadline = began + self.start_timeout
            certs = self._certs = _generate_certs(res.tmp_dir / "certs")
            etcd_url = self._start_etcd(res, deadline)
            port = self._apiserver_port = free_port()
            self._server_url = f"https://127.0.0.1:{port}"
            self.kubeconfig_path = res.tmp_dir / "admin.kubeconfig"
            _write_kubeconfig(
                self.kubeconfig_path,
                cluster={
                    "server": self._server_url,
                    "certificate-authority-data": _b64(certs.ca_cert),
                },
                user_name="admin",
                user={
                    "client-certificate-data": _b64(certs.admin_cert),
                    "client-key-data": _b64(certs.admin_key),
                },
            )
            self._start_apiserver(res, certs, etcd_url, port, deadline)
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.monotonic() - began

    def restart(self, *, etcd: bool = True, kill: bool = False, downtime: float = 0.0) -> float:
        """Stop kube-apiserver (and etcd too with ``etcd=True``), wait ``downtime`` seconds, then start
        them again on the same ports with the same certificates and etcd data directory: stored objects,
        resource versions and kubeconfigs stay valid, as after a control-plane upgrade or node reboot.

        ``kill=True`` sends SIGKILL instead of SIGTERM (a crash rather than a graceful shutdown).
        Returns the seconds from the stop until kube-apiserver answered /readyz again.
        """
        res = self._resources
        if res is None or self._certs is None or self._etcd_ports is None or self._apiserver_port is None:
            raise ControlPlaneError("control plane is not running")
        began = time.monotonic()
        for name in ("kube-apiserver", "etcd") if etcd else ("kube-apiserver",):
            for entry in [e for e in res.processes if e[0] == name]:
                res.processes.remove(entry)
                if kill and entry[1].poll() is None:
                    entry[1].kill()
                    entry[1].wait()
                stop_process(entry[1], res.stop_grace)
        if downtime > 0:
            time.sleep(downtime)  # the outage asked for, not a wait for a condition
        try:
            deadline = time.monotonic() + self.start_timeout
            etcd_url = (
                self._start_etcd(res, deadline, ports=self._etcd_ports)
                if etcd
                else f"http://127.0.0.1:{self._etcd_ports[0]}"
            )
            self._start_apiserver(res, self._certs, etcd_url, self._apiserver_port, deadline)
        except BaseException:
            self.stop()
            raise
        return time.monotonic() - began

    def stop(self) -> None:
        """Terminate kube-apiserver and etcd (SIGTERM, SIGKILL after stop_timeout), reap them and
        delete the temporary directory. Idempotent."""
        if self._finalizer is not None:
            self._finalizer()  # runs _Resources.release once and detaches the finalizer
        self._finalizer = None
        self._resources = None

    def kubectl(
        self,
        *args: str,
        input: str | None = None,  # mirrors subprocess.run
        check: bool = True,
        timeout: float = 60.0,
    ) -> subprocess.CompletedProcess[str]:
        if self._resources is None:
            raise ControlPlaneError("control plane is not running")
        return super().kubectl(*args, input=input, check=check, timeout=timeout)

    # -- internals ---------------------------------------------------------------------------------

    def _spawn(self, res: _Resources, name: str, args: Sequence[str]) -> tuple[subprocess.Popen[bytes], Path]:
        log_path = res.tmp_dir / f"{name}.log"
        log = log_path.open("ab")  # appended: a restart keeps the earlier run's lines
        res.log_files.append(log)
        proc = subprocess.Popen(
            [str(self.bin_dir / name), *args],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=res.tmp_dir,
            preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
        )
        res.processes.append((name, proc))
        return proc, log_path

    def _start_etcd(self, res: _Resources, deadline: float, ports: tuple[int, int] | None = None) -> str:
        client, peer = ports or (free_port(), free_port())
        self._etcd_ports = (client, peer)
        client_url, peer_url = f"http://127.0.0.1:{client}", f"http://127.0.0.1:{peer}"
        proc, log = self._spawn(
            res,
            "etcd",
            [
                "--name=default",
                f"--data-dir={res.tmp_dir / 'etcd'}",
                f"--listen-client-urls={client_url}",
                f"--advertise-client-urls={client_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=default={peer_url}",
                # Throw-away data: skipping fsync makes every write (and so every test) faster.
                "--unsafe-no-fsync=true",
            ],
        )

        def healthy() -> bool:
            conn = http.client.HTTPConnection("127.0.0.1", client, timeout=2)
            try:
                conn.request("GET", "/health")
                resp = conn.getresponse()
                return resp.status == 200 and json.loads(resp.read()).get("health") == "true"
            finally:
                conn.close()

        _poll(healthy, proc, "etcd", log, deadline)
        return client_url

    def _start_apiserver(self, res: _Resources, certs: _Certs, etcd_url: str, port: int, deadline: float) -> None:
        proc, log = self._spawn(
            res,
            "kube-apiserver",
            [
                f"--etcd-servers={etcd_url}",
                f"--secure-port={port}",
                "--bind-address=127.0.0.1",
                "--advertise-address=127.0.0.1",
                f"--tls-cert-file={certs.serving_cert}",
                f"--tls-private-key-file={certs.serving_key}",
                f"--client-ca-file={certs.ca_cert}",
                "--authorization-mode=RBAC",
                f"--service-account-issuer=https://127.0.0.1:{port}",
                f"--service-account-key-file={certs.sa_public_key}",
                f"--service-account-signing-key-file={certs.sa_private_key}",
                "--service-cluster-ip-range=10.0.0.0/24",
                "--allow-privileged=true",
                # As envtest: no controller-manager creates the `default` ServiceAccount, and this
                # plugin would reject every pod that lacks one.
                "--disable-admission-plugins=ServiceAccount",
                # The `kubernetes` Service cannot point at a loopback address (Endpoints validation
                # rejects it, logging an error every 10 s), and nothing here runs in a pod to use it.
                "--endpoint-reconciler-type=none",
                *self.extra_apiserver_args,
            ],
        )
        context = ssl.create_default_context(cafile=str(certs.ca_cert))
        context.load_cert_chain(str(certs.admin_cert), str(certs.admin_key))

        def ready() -> bool:
            conn = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=2)
            try:
                conn.request("GET", "/readyz")
                resp = conn.getresponse()
                resp.read()
                return resp.status == 200
            finally:
                conn.close()

        _poll(ready, proc, "kube-apiserver", log, deadline)


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def _poll(check: Callable[[], bool], proc: subprocess.Popen[bytes], name: str, log: Path, deadline: float) -> None:
    last_error = "no answer yet"
    while True:
        if proc.poll() is not None:
            raise ControlPlaneError(
                f"{name} exited with code {proc.returncode} during start-up; last lines of its log:\n" + _log_tail(log)
            )
        try:
            if check():
                return
            last_error = "not ready"
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last_error = f"{type(exc).__name__}: {exc}"
        if time.monotonic() > deadline:
            raise ControlPlaneError(
                f"{name} not ready before the deadline ({last_error}); last lines of its log:\n" + _log_tail(log)
            )
        time.sleep(0.05)
