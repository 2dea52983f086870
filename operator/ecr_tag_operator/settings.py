"""The operator's settings: one typed object, read from the environment (and CLI flags) at start-up."""

from __future__ import annotations

import os
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_region() -> str:
    return os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"


class Settings(BaseSettings):
    """Everything the operator can be told; carried on kopf's ``memo`` so handlers never read env."""

    model_config = SettingsConfigDict(env_prefix="ECR_TAG_OPERATOR_", extra="ignore", frozen=True)

    region: str = Field(default_factory=_default_region, description="Region for specs that name none.")
    endpoint_url: str | None = Field(
        default=None,
        description="ECR endpoint override; botocore's AWS_ENDPOINT_URL_ECR works as well.",
    )
    # standard, not adaptive: the client-side limits pace each operation to its quota, while adaptive
    # mode's one limiter per client slows every operation after any throttle (measured: 200 resources
    # under 20 % throttling converged in 429 s with adaptive, 48 s with standard).
    retry_mode: Literal["standard", "adaptive", "legacy"] = "standard"
    max_attempts: int = Field(default=5, ge=1, le=20)
    connect_timeout: float = Field(default=5.0, gt=0)
    read_timeout: float = Field(default=30.0, gt=0)
    transient_retry_delay: float = Field(
        default=20.0, gt=0, description="Seconds before kopf retries after a transient ECR failure."
    )
    drift_tick: float = Field(
        default=5.0,
        gt=0,
        le=60,
        description="How often the drift scheduler looks for resources whose drift check is due.",
    )
    drift_group_size: int = Field(
        default=50,
        ge=1,
        le=100,
        description="Drift checks of one repository released together (their reads share one call).",
    )
    drift_parallel_groups: int = Field(default=2, ge=1, le=16, description="Groups of drift checks run at once.")
    # 0.3: a repository's checks come due spread over the interval, so a group waits for about a
    # quarter of it to fill 50 members; earlier (0.1) groups left with ~37 (benchmarks.drift_groups).
    drift_early: float = Field(
        default=0.3,
        ge=0,
        le=0.5,
        description="A check due within this fraction of its interval joins a group of its repository "
        "that runs now, rather than needing a read of its own later.",
    )
    max_listed_layers: int = Field(default=50, ge=1, le=1000)
    max_listed_failures: int = Field(default=20, ge=1, le=200)
    max_message_length: int = Field(default=300, ge=40, le=4000)
    max_workers: int = Field(
        default=64, ge=1, le=512, description="Threads for the synchronous handlers (reads wait for company in them)."
    )
    object_worker_limit: int = Field(
        default=256,
        ge=16,
        description="Objects kopf processes at once (the rest queue as raw events); above max_workers. "
        "Not held while kopf lists what exists at start (kopf_startup.py).",
    )
    object_worker_idle: float = Field(
        default=0.5, gt=0, description="Seconds an object's kopf worker waits for more events before it exits."
    )
    # ECR's default quotas per account and region (adjustable at AWS; set these to match).
    put_image_rate: float = Field(default=10.0, ge=0, description="PutImage calls per second; 0: no limit.")
    batch_get_image_rate: float = Field(default=2000.0, ge=0)
    check_layers_rate: float = Field(default=1000.0, ge=0)
    delete_rate: float = Field(
        default=10.0, ge=0, description="BatchDeleteImage calls per second (no published quota)."
    )
    # The copy's calls, at the defaults of ECR's Service Quotas page (Amazon ECR user guide, "Amazon ECR
    # service quotas": Rate of GetDownloadUrlForLayer requests 3,000/s, L-A60A366D; InitiateLayerUpload
    # 100/s, L-95B28F8D; UploadLayerPart 500/s, L-A1670B10; CompleteLayerUpload 100/s, L-44194860).
    download_url_rate: float = Field(default=3000.0, ge=0, description="GetDownloadUrlForLayer calls per second.")
    initiate_upload_rate: float = Field(default=100.0, ge=0, description="InitiateLayerUpload calls per second.")
    upload_part_rate: float = Field(default=500.0, ge=0, description="UploadLayerPart calls per second.")
    complete_upload_rate: float = Field(default=100.0, ge=0, description="CompleteLayerUpload calls per second.")
    list_referrers_rate: float = Field(
        default=100.0,
        ge=0,
        description="ListImageReferrers calls per second (the quotas page lists none; the layer calls' 100/s).",
    )
    change_read_patience: float = Field(
        default=0.02, ge=0, le=5, description="Seconds a spec change's reads wait to share a call with others."
    )
    drift_read_patience: float = Field(
        default=0.1,
        ge=0,
        le=30,
        description="Seconds a drift check's reads wait for the rest of its group, to share a call.",
    )
    drift_jitter: float = Field(
        default=0.1, ge=0, le=1, description="Drift checks are spread over this fraction of their interval."
    )
    metrics_port: int = Field(default=9090, ge=0, le=65535, description="0 turns the metrics endpoint off.")
    metrics_host: str = "0.0.0.0"  # noqa: S104 - a pod's metrics port is scraped from outside the pod
    rescue_after: float = Field(
        default=900.0,
        ge=60,
        description="Seconds after creation when the drift scheduler reconciles a resource never reconciled.",
    )
    api_connection_limit: int = Field(
        default=64, ge=4, le=1024, description="Connections to the Kubernetes API at most (kopf's own has no limit)."
    )
    # Short enough that a watch on a connection that died silently (an API server that crashed behind
    # a load balancer) is re-established within 30 s; a re-watch from the last resourceVersion is cheap.
    watch_server_timeout: int = Field(default=15, ge=5)
    watch_client_timeout: int = Field(default=20, ge=5)
    api_list_chunk_size: int = Field(default=500, ge=10, description="Objects per page when kopf lists them.")
    api_connect_timeout: float = Field(default=5.0, gt=0, description="Seconds to connect to the Kubernetes API.")
    api_request_timeout: float = Field(
        default=15.0, gt=0, description="Seconds for one Kubernetes API request (kopf retries on a new connection)."
    )
    account_id: str | None = Field(
        default=None,
        pattern=r"^[0-9]{12}$",
        description="The operator's own account, for grants that name none; default: STS GetCallerIdentity.",
    )
    namespace_in_flight: int = Field(
        default=16,
        ge=1,
        le=512,
        description="Reconciles of one namespace in flight at most; more wait their turn in the drift "
        "scheduler, so that one namespace's backlog never holds every worker.",
    )
    fair_writes: bool = Field(
        default=True,
        description="PutImage and BatchDeleteImage tokens of one quota go round-robin to the namespaces "
        "waiting for them; false: one queue in arrival order.",
    )
    # Caps on tag claims, each refused past it with reason TooManyClaims (oldest claims keep their place).
    # Per tag: one key's claims are sorted and scanned for every resource that claims it, and legitimate
    # sharing of one tag (resources promoting the same image) is a handful; 50 is one drift group.
    max_claims_per_tag: int = Field(
        default=50, ge=1, le=100_000, description="Granted claims one (account, region, repository, tag) may have."
    )
    # Per namespace: 10,000 claims are 100 resources of 100 tags or 5,000 of two (the largest convergence
    # benchmark), about 3 MB of index, and at ECR's default 10 PutImage/s a backlog of under 17 minutes.
    max_claims_per_namespace: int = Field(
        default=10_000, ge=1, le=10_000_000, description="Tag claims the EcrImageTags of one namespace may have."
    )
    max_clients: int = Field(
        default=64, ge=1, le=4096, description="AWS clients kept at most (one per region, role and namespace)."
    )
    copy_parallel_blobs: int = Field(
        default=4, ge=1, le=64, description="Blobs one reconcile copies at once (each holds one part in memory)."
    )
    copy_parallel_resources: int = Field(
        default=4, ge=1, le=256, description="Reconciles copying blobs at once, across all resources."
    )
    copy_blobs_in_flight: int = Field(
        default=4,
        ge=1,
        le=256,
        description="Blobs streamed at once across every reconcile: each holds one part buffer, and about "
        "four times a part while botocore base64-encodes it into UploadLayerPart's JSON body.",
    )
    copy_part_bytes: int = Field(
        default=5 * 1024 * 1024,
        ge=5 * 1024 * 1024,
        le=20 * 1024 * 1024,
        description="Layer part size (ECR: every part but the last at least 5 MiB; at most InitiateLayerUpload's "
        "partSize); larger parts mean fewer calls and more memory.",
    )
    copy_max_blob_bytes: int | None = Field(
        default=None, ge=1, description="Blobs larger than this are not copied (none by default)."
    )
    copy_attempts: int = Field(
        default=4, ge=1, le=20, description="Downloads of one blob tried (an expired URL or a cut stream)."
    )
    copy_budget_seconds: float = Field(
        default=60.0,
        gt=0,
        description="A reconcile starts no new blob after this long; it reports Copying and comes back soon.",
    )
    copy_progress_interval: float = Field(
        default=5.0,
        gt=0,
        le=300,
        description="Seconds between status.copy updates (and byte metrics) while a copy runs in a reconcile.",
    )
    max_listed_referrers: int = Field(default=20, ge=1, le=200)
    finalizer: str = "ecrtag.dev/finalizer"
    annotation_prefix: str = "ecrtag.dev"

    @property
    def rates(self) -> dict[str, float]:
        return {
            "PutImage": self.put_image_rate,
            "BatchGetImage": self.batch_get_image_rate,
            "BatchCheckLayerAvailability": self.check_layers_rate,
            "BatchDeleteImage": self.delete_rate,
            "GetDownloadUrlForLayer": self.download_url_rate,
            "InitiateLayerUpload": self.initiate_upload_rate,
            "UploadLayerPart": self.upload_part_rate,
            "CompleteLayerUpload": self.complete_upload_rate,
            "ListImageReferrers": self.list_referrers_rate,
        }
