"""Every reason a user can see in status is explained in README's troubleshooting table."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

import botocore.session

from ecr_tag_operator.ecr import TRANSIENT_CODES
from ecr_tag_operator.planner import TRANSIENT_REASONS, reason_for

README = Path(__file__).resolve().parents[2] / "README.md"
# Reasons the operator writes on its own (not an ECR code).
OWN = {
    "InSync",
    "InvalidSpec",
    "Forbidden",
    "TagConflict",
    "Drifted",
    "NotInSync",
    "SourceNotResolved",
    "LayersNotFound",
    "ReferencedImagesNotFound",
    "LayersUnavailable",
    "LayersArchived",
    "UnsupportedManifest",
    "ImageDigestDoesNotMatch",
    "NoCredentials",
    "AccessDenied",
}


def documented() -> list[str]:
    text = README.read_text()
    table = text[text.index("## Troubleshooting by reason") :].split("\n## ", 1)[0]
    names: list[str] = []
    for line in table.splitlines():
        if line.startswith("| `"):
            names += re.findall(r"`([A-Za-z*]+)`", line.split("|")[1])
    return names


def test_every_reason_is_in_the_troubleshooting_table() -> None:
    model = botocore.session.get_session().get_service_model("ecr")
    put_errors = {e.name for e in model.operation_model("PutImage").error_shapes} - {"ImageAlreadyExistsException"}
    image_codes = set(model.shape_for("ImageFailureCode").enum)
    reasons = OWN | TRANSIENT_REASONS | {reason_for(c) for c in put_errors | image_codes | TRANSIENT_CODES}
    reasons -= {"Reconciling"}  # reserved for Argo CD's table; the operator does not write it
    patterns = documented()
    missing = sorted(r for r in reasons if not any(fnmatch.fnmatchcase(r, p) for p in patterns))
    assert missing == []
