"""How the emulator's OCI distribution face names a registry (one per account and region).

ECR's registry for account A in region R is ``A.dkr.ecr.R.amazonaws.com``. The emulator answers every
registry on its one port and tells them apart by the request's Host header:

- ``A.dkr.ecr.R.localhost:PORT`` is account A's registry in region R;
- any other host, e.g. ``127.0.0.1:PORT`` (what crane, oras and cosign are given with plain HTTP), is the
  default registry: moto's default account in the emulator's default region.

Repository names may contain ``/``, so a path prefix per registry would be ambiguous; the Host header is
also what a client sends for ECR itself. Pure functions, no moto: the launcher imports this too.
"""

from __future__ import annotations

import re
from typing import Final

DEFAULT_ACCOUNT: Final = "123456789012"  # moto's DEFAULT_ACCOUNT_ID: the account of any unknown access key
DEFAULT_REGION: Final = "us-east-1"
_HOST_RE: Final = re.compile(r"(\d{12})\.dkr\.ecr\.([a-z0-9-]+)\.localhost(?::(\d+))?", re.IGNORECASE)


def registry_of_host(host: str) -> tuple[str, str]:
    """(account, region) addressed by a Host header."""
    match = _HOST_RE.fullmatch(host.strip())
    if match is None:
        return DEFAULT_ACCOUNT, DEFAULT_REGION
    return match.group(1), match.group(2).lower()


def registry_host(account: str, region: str, host: str) -> str:
    """``host:port`` of the registry of ``account`` in ``region``, as seen from a request sent to ``host``."""
    if (account, region) == (DEFAULT_ACCOUNT, DEFAULT_REGION) and _HOST_RE.fullmatch(host.strip()) is None:
        return host
    port = host.rsplit(":", 1)[1] if ":" in host else "80"
    return f"{account}.dkr.ecr.{region}.localhost:{port}"
