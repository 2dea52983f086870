"""Copy throughput, memory and re-run cost of the operator's blob copy, against one ECR emulator.

    .venv/bin/python -m benchmarks.copy [--mib 1024]

A benchmark, not a test: it prints a markdown table. One emulator; a blob of ``--mib`` MiB (generated
in 10 MiB pieces, never whole in memory) pushed into ``bench/src``; then, each into a repository of
its own:

1. a plain loop: GetDownloadUrlForLayer, the URL read in 10 MiB pieces (urllib), each piece an
   UploadLayerPart, then CompleteLayerUpload (what a script would do);
2. the operator's core reconcile of an EcrImageTag whose source is ``bench/src`` (copy IfMissing):
   throughput, and this process's VmRSS growth over the copy (sampled every 0.2 s);
3. the same reconcile again: bytes the emulator served (should be 0).

1 and 2 run ``--rounds`` times in ABBA order (plain, operator, operator, plain, ...): on a shared
machine the load drifts during a run, and alternating cancels a steady drift; the ratio is the plain
loops' total time over the operator's.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from benchmarks.procstat import RssSampler, status_kib
from ecr_tag_localenv import ecr_seed
from ecr_tag_localenv.ecr_accounts import DUMMY
from ecr_tag_localenv.ecr_launcher import client_env, start_emulator
from ecr_tag_operator.core import Request, reconcile
from ecr_tag_operator.ecr import Boto3Ecr
from ecr_tag_operator.manifests import OCI_MANIFEST
from ecr_tag_operator.settings import Settings
from ecr_tag_operator.spec import parse_spec

MIB = 1024 * 1024
PIECE = 10 * MIB
LOG = logging.getLogger("benchmark")


def pieces(total: int) -> Iterator[bytes]:
    """Deterministic bytes, 10 MiB at a time."""
    for n in range(0, total, PIECE):
        size = min(PIECE, total - n)
        yield hashlib.sha256(str(n).encode()).digest() * (size // 32) + b"\0" * (size % 32)


def seed(client: Any, total: int) -> tuple[str, str]:
    """A blob of ``total`` bytes and an OCI image of it, tagged build-1 in bench/src; (digest, manifest)."""
    ecr_seed.ensure_repository(client, "bench/src")
    upload_id = client.initiate_layer_upload(repositoryName="bench/src")["uploadId"]
    hasher = hashlib.sha256()
    first = 0
    for piece in pieces(total):
        hasher.update(piece)
        client.upload_layer_part(
            repositoryName="bench/src",
            uploadId=upload_id,
            partFirstByte=first,
            partLastByte=first + len(piece) - 1,
            layerPartBlob=piece,
        )
        first += len(piece)
    digest = "sha256:" + hasher.hexdigest()
    client.complete_layer_upload(repositoryName="bench/src", uploadId=upload_id, layerDigests=[digest])
    config = ecr_seed.upload_blob(client, "bench/src", b"{}")
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": OCI_MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config, "size": 2},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": digest, "size": total}],
        }
    )
    ecr_seed.put_manifest(client, "bench/src", manifest, tag="build-1", media_type=OCI_MANIFEST)
    return digest, manifest


def plain_loop(client: Any, digest: str, total: int, target: str) -> float:
    """Download then upload, 10 MiB at a time; seconds taken."""
    ecr_seed.ensure_repository(client, target)
    started = time.monotonic()
    url = client.get_download_url_for_layer(repositoryName="bench/src", layerDigest=digest)["downloadUrl"]
    upload_id = client.initiate_layer_upload(repositoryName=target)["uploadId"]
    first = 0
    with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 - the emulator's loopback URL
        while piece := response.read(PIECE):
            client.upload_layer_part(
                repositoryName=target,
                uploadId=upload_id,
                partFirstByte=first,
                partLastByte=first + len(piece) - 1,
                layerPartBlob=piece,
            )
            first += len(piece)
    client.complete_layer_upload(repositoryName=target, uploadId=upload_id, layerDigests=[digest])
    if first != total:
        raise RuntimeError(f"the plain loop moved {first} of {total} bytes")
    return time.monotonic() - started


@dataclass
class OperatorRun:
    seconds: float
    rss_growth_mib: float
    status: dict[str, Any]
    spec: Any


def operator_copy(port: Boto3Ecr, settings: Settings, client: Any, emulator: Any, target: str) -> OperatorRun:
    """One core reconcile copying ``bench/src`` into ``target``; its time and this process's RSS growth."""
    ecr_seed.ensure_repository(client, target)
    spec = parse_spec(
        {"repositoryName": target, "source": {"tag": "build-1", "repositoryName": "bench/src"}, "tags": ["v1"]}
    )
    sampler = RssSampler(os.getpid(), every=0.2)
    rss_before = status_kib(os.getpid(), "VmRSS") or 0
    sampler.start()
    emulator.control.reset_calls()
    started = time.monotonic()
    result = reconcile(Request(spec, {}, 1, "create"), port, settings, datetime.now(UTC), LOG)
    seconds = time.monotonic() - started
    sampler.stop()
    return OperatorRun(seconds, (sampler.peak_kib - rss_before) / 1024, result.status, spec)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mib", type=int, default=1024, help="blob size in MiB (default 1024)")
    parser.add_argument("--rounds", type=int, default=2, help="plain/operator pairs, in ABBA order (default 2)")
    args = parser.parse_args(argv)
    total = args.mib * MIB
    plain: list[float] = []
    runs: list[OperatorRun] = []
    with start_emulator() as emulator:
        os.environ.update(client_env(emulator.endpoint_url))
        client = DUMMY.client("ecr", emulator.endpoint_url, total_max_attempts=3)
        print(f"seeding a {args.mib} MiB blob", file=sys.stderr)
        digest, _ = seed(client, total)

        settings = Settings(endpoint_url=emulator.endpoint_url, region="us-east-1", copy_budget_seconds=3600)
        port = Boto3Ecr(settings)
        # Warm up: botocore's models, the clients and the HTTP pools are loaded by a small copy first,
        # so that what is measured is the copy's own memory.
        ecr_seed.push(client, "bench/warm-src", "build-1", "oci", seed="warm")
        ecr_seed.ensure_repository(client, "bench/warm")
        warm = parse_spec(
            {
                "repositoryName": "bench/warm",
                "source": {"tag": "build-1", "repositoryName": "bench/warm-src"},
                "tags": ["v1"],
            }
        )
        reconcile(Request(warm, {}, 1, "create"), port, settings, datetime.now(UTC), LOG)

        for n in range(args.rounds):
            order = ("plain", "operator") if n % 2 == 0 else ("operator", "plain")
            for kind in order:
                print(f"round {n + 1}: {kind}", file=sys.stderr)
                if kind == "plain":
                    plain.append(plain_loop(client, digest, total, f"bench/plain-{n}"))
                else:
                    runs.append(operator_copy(port, settings, client, emulator, f"bench/op-{n}"))

        last = runs[-1]
        emulator.control.reset_calls()
        again = reconcile(Request(last.spec, last.status, 1, "drift"), port, settings, datetime.now(UTC), LOG)
        rerun_bytes = emulator.control.calls().downloaded_bytes
        again_ready = next(c for c in again.status["conditions"] if c["type"] == "Ready")

    plain_s, op_s = sum(plain), sum(r.seconds for r in runs)
    moved = args.mib * len(runs)
    ready = [next(c for c in r.status["conditions"] if c["type"] == "Ready")["reason"] for r in runs]
    parts = (runs[0].status.get("copy") or {}).get("parts")
    print("| measure | value | target |")
    print("|---|---|---|")
    print(f"| blob | {args.mib} MiB, {args.rounds} rounds (ABBA) | |")
    print(f"| plain loop | {', '.join(f'{s:.1f}' for s in plain)} s: {moved / plain_s:.1f} MiB/s | |")
    print(
        f"| operator copy | {', '.join(f'{r.seconds:.1f}' for r in runs)} s: {moved / op_s:.1f} MiB/s, "
        f"{parts} parts, Ready {', '.join(ready)} | |"
    )
    print(f"| throughput ratio (operator ÷ plain) | {plain_s / op_s:.2f} | ≥ 0.8 |")
    growth = ", ".join(f"{r.rss_growth_mib:.1f}" for r in runs)
    print(f"| operator RSS growth while copying | {growth} MiB | ≤ 64 MiB |")
    print(f"| bytes moved on a re-run | {rerun_bytes} (Ready {again_ready['reason']}) | 0 |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
