"""Where `hack/build-oci-clients.sh` puts the OCI registry clients (crane, oras, cosign).

Nothing here builds: a missing client is an error that says which command builds it, so a test that
needs one fails with that message instead of skipping.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from ecr_tag_localenv.control_plane import repo_root

__all__ = ["BUILD_COMMAND", "CLIENTS", "OciClientsError", "expected_bin_dir", "find_client", "pinned_versions"]

BUILD_COMMAND = "bash hack/build-oci-clients.sh"
CLIENTS = ("crane", "oras", "cosign")

_BUILD_SCRIPT = Path("hack") / "build-oci-clients.sh"


class OciClientsError(RuntimeError):
    """An OCI client binary is missing: the message says how to build it."""


def pinned_versions() -> dict[str, str]:
    """The versions the build script pins, after its environment overrides (CRANE_VERSION, ...)."""
    script = (repo_root() / _BUILD_SCRIPT).read_text()
    versions: dict[str, str] = {}
    for client in CLIENTS:
        var = f"{client.upper()}_VERSION"
        # The script is the single source of the pins: its `VAR="${VAR:-default}"` lines.
        match = re.search(rf'^{var}="\$\{{{var}:-([^}}]+)\}}"', script, re.MULTILINE)
        if match is None:
            raise OciClientsError(f"cannot find the default of {var} in {_BUILD_SCRIPT}")
        versions[client] = os.environ.get(var) or match.group(1)
    return versions


def _cache_root() -> Path:
    # The same rule as both hack/build-*.sh scripts.
    explicit = os.environ.get("ECR_TAG_OPERATOR_CACHE")
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ecr-tag-operator"


def expected_bin_dir() -> Path:
    v = pinned_versions()
    return _cache_root() / "bin" / f"crane-{v['crane']}_oras-{v['oras']}_cosign-{v['cosign']}"


def find_client(name: str) -> Path:
    """The path of one pinned client, or OciClientsError saying to run the build script."""
    if name not in CLIENTS:
        raise ValueError(f"unknown OCI client {name!r}; known: {', '.join(CLIENTS)}")
    path = expected_bin_dir() / name
    if not os.access(path, os.X_OK):
        raise OciClientsError(
            f"{name} is not built ({path} is missing): run hack/build-oci-clients.sh "
            f"(`{BUILD_COMMAND}` from the repository root, or `make oci-clients`; needs Go)"
        )
    return path
