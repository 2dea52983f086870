"""The naive baseline: what a script built on the AWS CLI retag recipe does.

    aws ecr batch-get-image --repository-name R --image-ids imageTag=SRC --query 'images[].imageManifest'
    aws ecr put-image --repository-name R --image-tag NEW --image-manifest "$MANIFEST"

One BatchGetImage and one PutImage per tag, one tag after the other, with botocore's standard retry
mode and 3 attempts (the AWS CLI v2 defaults), so ECR's PutImage quota throttles it and botocore backs
off. A tag still failing after the retries is retried in a later pass, as someone re-running the script
would. Its drift check is one BatchGetImage per tag.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from ecr_tag_localenv.clients import plain_client

RETRY_ENV = {"AWS_RETRY_MODE": "standard", "AWS_MAX_ATTEMPTS": "3"}
MAX_PASSES = 5


@dataclass(frozen=True)
class Retag:
    repository: str
    source_tag: str
    tag: str


@dataclass
class BaselineRun:
    seconds: float = 0.0
    passes: int = 0
    failed_first_pass: int = 0
    failed_at_end: int = 0
    errors: dict[str, int] = field(default_factory=dict)


@contextlib.contextmanager
def _env(values: Mapping[str, str]) -> Iterator[None]:
    """botocore reads AWS_RETRY_MODE / AWS_MAX_ATTEMPTS while creating a client; plain_client takes no
    Config, so set them for that moment only (nothing else runs in this process meanwhile)."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def cli_like_client(env: Mapping[str, str]) -> Any:
    """An ECR client configured as the AWS CLI v2 is by default (standard retries, 3 attempts)."""
    with _env(RETRY_ENV):
        client = plain_client(
            "ecr",
            endpoint_url=env["AWS_ENDPOINT_URL_ECR"],
            region=env["AWS_DEFAULT_REGION"],
            access_key_id=env["AWS_ACCESS_KEY_ID"],
            secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        )
    retries = client.meta.config.retries or {}
    if retries.get("mode") != "standard":
        raise RuntimeError(f"the baseline client did not pick up standard retries: {retries}")
    return client


def _retag(client: Any, job: Retag) -> None:
    got = client.batch_get_image(repositoryName=job.repository, imageIds=[{"imageTag": job.source_tag}])
    if not got.get("images"):
        raise LookupError(f"{job.repository}:{job.source_tag} not found: {got.get('failures')}")
    image = got["images"][0]
    kwargs: dict[str, Any] = {
        "repositoryName": job.repository,
        "imageManifest": image["imageManifest"],
        "imageTag": job.tag,
    }
    if image.get("imageManifestMediaType"):
        kwargs["imageManifestMediaType"] = image["imageManifestMediaType"]
    with contextlib.suppress(client.exceptions.ImageAlreadyExistsException):  # already there: done
        client.put_image(**kwargs)


def retag_all(client: Any, jobs: Sequence[Retag], deadline: float) -> BaselineRun:
    """Sequential passes over the tags until every one is done (or MAX_PASSES / the deadline)."""
    run = BaselineRun()
    started = time.monotonic()
    pending = list(jobs)
    while pending and run.passes < MAX_PASSES and time.monotonic() < deadline:
        run.passes += 1
        failed: list[Retag] = []
        for job in pending:
            if time.monotonic() > deadline:
                failed.append(job)
                continue
            try:
                _retag(client, job)
            except client.exceptions.ClientError as exc:
                code = str(exc.response.get("Error", {}).get("Code", "Unknown"))
                run.errors[code] = run.errors.get(code, 0) + 1
                failed.append(job)
        if run.passes == 1:
            run.failed_first_pass = len(failed)
        pending = failed
    run.failed_at_end = len(pending)
    run.seconds = time.monotonic() - started
    return run


def drift_check_all(client: Any, jobs: Sequence[Retag], workers: int = 8) -> float:
    """One BatchGetImage per tag (is it still where it should be?); returns the seconds taken."""
    started = time.monotonic()

    def check(job: Retag) -> None:
        client.batch_get_image(repositoryName=job.repository, imageIds=[{"imageTag": job.tag}])

    with ThreadPoolExecutor(max_workers=workers) as pool:
        for _ in pool.map(check, jobs):
            pass
    return time.monotonic() - started
