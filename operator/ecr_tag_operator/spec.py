"""The EcrImageTag spec as a typed model: parsed once per reconcile, validated beyond the CRD's schema."""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

# The same rules the CRD enforces; repeated here because a spec can reach the operator from a cluster
# whose CRD is older than this code, and a bad value must not reach ECR.
REPOSITORY_PATTERN = r"^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(\/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$"
TAG_PATTERN = r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$"
DIGEST_PATTERN = r"^sha256:[a-f0-9]{64}$"
REGISTRY_PATTERN = r"^[0-9]{12}$"
MIN_DRIFT_INTERVAL = timedelta(seconds=30)
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ms|s|m|h)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}


class SpecError(ValueError):
    """The spec cannot be acted on; the message is for the user."""


def parse_duration(text: str) -> timedelta:
    """Parse a Go-style duration such as ``5m``, ``90s`` or ``1h30m`` (what CEL's duration() takes)."""
    parts = _DURATION_PART.findall(text)
    if not text or "".join(n + u for n, u in parts) != text:
        raise ValueError(f"{text!r} is not a duration such as 30s, 5m or 1h30m")
    return timedelta(seconds=sum(float(n) * _UNIT_SECONDS[u] for n, u in parts))


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="ignore")


class Source(_Model):
    tag: str | None = Field(default=None, pattern=TAG_PATTERN)
    digest: str | None = Field(default=None, pattern=DIGEST_PATTERN)
    repository_name: str | None = Field(default=None, min_length=2, max_length=256, pattern=REPOSITORY_PATTERN)
    registry_id: str | None = Field(default=None, pattern=REGISTRY_PATTERN)
    region: str | None = Field(default=None, max_length=32)

    @model_validator(mode="after")
    def _tag_or_digest(self) -> Source:
        if self.tag is None and self.digest is None:
            raise ValueError("source needs a tag, a digest, or both")
        return self


class EcrImageTagSpec(_Model):
    repository_name: str = Field(min_length=2, max_length=256, pattern=REPOSITORY_PATTERN)
    registry_id: str | None = Field(default=None, pattern=REGISTRY_PATTERN)
    region: str | None = Field(default=None, max_length=32)
    source: Source
    tags: tuple[str, ...] = Field(min_length=1, max_length=100)
    mode: Literal["Enforce", "Observe"] = "Enforce"
    deletion_policy: Literal["Retain", "Delete"] = "Retain"
    drift_check_interval: timedelta = timedelta(minutes=5)
    copy_mode: Literal["IfMissing", "Never"] = Field(default="IfMissing", alias="copy")
    # All, None, or the artifact types to carry (e.g. application/vnd.dev.sigstore.bundle.v0.3+json).
    referrers: Literal["All", "None"] | tuple[str, ...] = "All"

    @field_validator("tags")
    @classmethod
    def _tags_valid(cls, tags: tuple[str, ...]) -> tuple[str, ...]:
        bad = [t for t in tags if not re.fullmatch(TAG_PATTERN, t)]
        if bad:
            raise ValueError(f"not valid OCI tags: {', '.join(bad)}")
        if len(set(tags)) != len(tags):
            raise ValueError("tags must be unique")
        return tags

    @field_validator("referrers", mode="before")
    @classmethod
    def _one_word_list(cls, value: Any) -> Any:
        """The CRD's ["All"] / ["None"] (a structural schema has no string-or-list type) mean All / None."""
        if isinstance(value, list | tuple) and len(value) == 1 and value[0] in ("All", "None"):
            return value[0]
        return value

    @field_validator("referrers")
    @classmethod
    def _referrer_types(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        if isinstance(value, tuple) and (
            not value or len(value) > 20 or any(not t or len(t) > 255 or t in ("All", "None") for t in value)
        ):
            raise ValueError("referrers: All, None, or a list of 1 to 20 artifact types")
        return value

    @field_validator("drift_check_interval", mode="before")
    @classmethod
    def _parse_interval(cls, value: Any) -> Any:
        return parse_duration(value) if isinstance(value, str) else value

    @field_validator("drift_check_interval")
    @classmethod
    def _interval_floor(cls, value: timedelta) -> timedelta:
        if value < MIN_DRIFT_INTERVAL:
            raise ValueError("driftCheckInterval must be at least 30s")
        return value

    @model_validator(mode="after")
    def _source_not_a_target(self) -> EcrImageTagSpec:
        if self.source.tag in self.tags and self.source_location == self.target_location:
            raise ValueError("source.tag must not also be listed in tags for the same repository")
        return self

    @property
    def source_repository(self) -> str:
        return self.source.repository_name or self.repository_name

    @property
    def source_registry(self) -> str | None:
        return self.source.registry_id or self.registry_id

    def source_region(self, default: str) -> str:
        """The source's region: its own, else the target's, else the operator's."""
        return self.source.region or self.region or default

    @property
    def source_location(self) -> tuple[str | None, str | None, str]:
        return (self.source_registry, self.source.region or self.region, self.source_repository)

    @property
    def target_location(self) -> tuple[str | None, str | None, str]:
        return (self.registry_id, self.region, self.repository_name)

    @property
    def same_repository(self) -> bool:
        return self.source_location == self.target_location


def parse_spec(raw: Mapping[str, Any]) -> EcrImageTagSpec:
    """Validate a raw spec; a SpecError carries every problem, one per line, with the field's path."""
    try:
        return EcrImageTagSpec.model_validate(dict(raw))
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            where = ".".join(str(p) for p in err["loc"]) or "spec"
            problems.append(f"spec.{where}: {err['msg']}")
        raise SpecError("; ".join(problems)) from None
