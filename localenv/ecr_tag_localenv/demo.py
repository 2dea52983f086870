"""``ecr-tag-demo`` (``make demo``): the operator's main job on an embedded default.

Builds (or reuses) the control-plane binaries, starts kube-apiserver + etcd and the ECR emulator on
127.0.0.1, pushes an image, installs the CRD, starts the operator, applies examples/basic.yaml, waits
for Ready and prints what a user would look at. Everything it started is stopped on the way out.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import yaml

from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.clients import plain_client
from ecr_tag_localenv.control_plane import ControlPlane, ensure_binaries, repo_root
from ecr_tag_localenv.ecr_launcher import REGION, start_emulator
from ecr_tag_localenv.ecr_tags import tag_digest
from ecr_tag_localenv.operator_process import OperatorProcess
from ecr_tag_localenv.waiting import wait_for

EXAMPLE = "examples/basic.yaml"
POLICY = "examples/policy-demo.yaml"
READY_TIMEOUT = 90.0


def say(text: str) -> None:
    print(f"==> {text}", flush=True)


@contextlib.contextmanager
def _interrupts_as_exit() -> Iterator[threading.Event]:
    """Ctrl-C (or SIGTERM) ends the wait; cleanup runs in the finally blocks either way."""
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield stop
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


def _wait_ready(cp: ControlPlane, namespace: str, name: str) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def ready() -> dict[str, Any] | None:
        seen.update(json.loads(cp.kubectl("get", "ecrimagetag", name, "-n", namespace, "-o", "json").stdout))
        cond = [c for c in seen.get("status", {}).get("conditions", []) if c.get("type") == "Ready"]
        settled = cond and cond[0].get("status") in ("True", "False") and cond[0].get("reason") != "Reconciling"
        return dict(seen) if settled else None

    try:
        return wait_for(f"a Ready condition on {namespace}/{name}", ready, timeout=READY_TIMEOUT, every=0.3)
    except TimeoutError as exc:
        raise TimeoutError(f"{exc}; its status: {seen.get('status')}") from None


def _crane_hint(client: Any, registry: str, repository: str, namespace: str, name: str) -> str:
    """How a newcomer pushes an image of their own (ECR's login: user AWS, GetAuthorizationToken's
    password) and promotes it with the sample."""
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    password = base64.b64decode(token).decode().partition(":")[2]
    return "\n".join(
        [
            f"    crane auth login {registry} -u AWS -p {password}",
            "    echo hello > hello.txt && tar cf hello.tar hello.txt",
            f"    crane append --insecure -f hello.tar -t {registry}/{repository}:mine",
            f"    KUBECONFIG=<printed below> kubectl patch eit {name} -n {namespace} --type merge "
            '-p \'{"spec":{"source":{"tag":"mine"}}}\'',
        ]
    )


def _policy_ready(cp: ControlPlane, name: str) -> bool:
    obj = json.loads(cp.kubectl("get", "ecrtagpolicy", name, "-o", "json").stdout)
    return any(c.get("type") == "Ready" for c in (obj.get("status") or {}).get("conditions") or [])


def run_demo(*, once: bool) -> int:
    root = repo_root()
    example = root / EXAMPLE
    doc = yaml.safe_load(example.read_text())
    name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace", "default")
    spec = doc["spec"]

    say("control-plane binaries (built from Go modules the first time: several minutes)")
    bin_dir = ensure_binaries(progress=lambda line: print(f"    {line}", flush=True))
    with tempfile.TemporaryDirectory(prefix="ecr-tag-operator-demo-") as tmp, _interrupts_as_exit() as stop:
        say("starting the ECR emulator on 127.0.0.1")
        with start_emulator(log_dir=Path(tmp)) as ecr, ControlPlane(bin_dir) as cp:
            say(f"ECR emulator at {ecr.endpoint_url}; kube-apiserver at {cp.server_url}")
            client = plain_client(
                "ecr",
                endpoint_url=ecr.endpoint_url,
                region=REGION,
                access_key_id=ecr.env["AWS_ACCESS_KEY_ID"],
                secret_access_key=ecr.env["AWS_SECRET_ACCESS_KEY"],
            )
            image = ecr_seed.push(client, spec["repositoryName"], spec["source"]["tag"], "index", seed="demo")
            say(f"pushed {spec['repositoryName']}:{spec['source']['tag']} = {image.digest} (OCI index, 2 platforms)")
            cp.install_crds(root / "crds" / "ecrimagetags.ecrtag.dev.yaml")
            cp.install_crds(root / "crds" / "ecrtagpolicies.ecrtag.dev.yaml")
            cp.kubectl("apply", "-f", str(root / POLICY))
            say(f"CRDs installed; applied {POLICY} (nothing is allowed without a policy):")
            print((root / POLICY).read_text(), flush=True)
            say("starting the operator")
            log_path = Path(tmp) / "operator.log"
            with OperatorProcess(cp.kubeconfig_path, ecr.env, log_path=log_path) as op:
                cp.kubectl("apply", "-f", str(example))
                say(f"applied {EXAMPLE}; waiting for Ready")
                obj = _wait_ready(cp, namespace, name)
                print(cp.kubectl("get", "eit", "-n", namespace, "-o", "wide").stdout, flush=True)
                wait_for("the policy's status", lambda: _policy_ready(cp, "demo"), timeout=60)
                print(cp.kubectl("get", "ecrtagpolicies").stdout, flush=True)
                say(f"status of {namespace}/{name}")
                print(yaml.safe_dump(obj["status"], sort_keys=False, width=200), flush=True)
                tags = {t: tag_digest(client, spec["repositoryName"], t) for t in spec["tags"]}
                say("in ECR now: " + ", ".join(f"{t} -> {d}" for t, d in tags.items()))
                ok = all(d == image.digest for d in tags.values())
                say(f"the emulator's OCI registry is at {ecr.registry}; push an image of your own with crane")
                print(_crane_hint(client, ecr.registry, spec["repositoryName"], namespace, name), flush=True)
                if not once:
                    say(f"operator log: {op.log_path}; KUBECONFIG={cp.kubeconfig_path}")
                    say("running until Ctrl-C")
                    stop.wait()
                say("stopping the operator, kube-apiserver, etcd and the ECR emulator")
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ecr-tag-demo", description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--once", action="store_true", help="exit once the sample is Ready instead of at Ctrl-C")
    return run_demo(once=parser.parse_args(argv).once)


if __name__ == "__main__":
    sys.exit(main())
