"""A small OCI distribution client for the tests of the emulator's ``/v2/`` face (requests, nothing else)."""

from __future__ import annotations

import base64
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import requests

from ecr_tag_localenv.ecr_media import sha256_digest

if TYPE_CHECKING:
    from mypy_boto3_ecr.client import ECRClient


def login(client: ECRClient) -> tuple[str, str]:
    """(user, password) from GetAuthorizationToken, as ``aws ecr get-login-password`` gives them."""
    token = client.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    user, _, password = base64.b64decode(token).decode().partition(":")
    return user, password


class Registry:
    def __init__(self, address: str, auth: tuple[str, str] | None, host: str | None = None) -> None:
        self.base = f"http://{address}"
        self.session = requests.Session()
        self.session.auth = auth
        if host is not None:
            self.session.headers["Host"] = host

    def request(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        url = path if path.startswith("http") else self.base + path
        return self.session.request(method, url, timeout=60, **kwargs)

    def push_blob(self, repository: str, data: bytes) -> str:
        """POST then PUT (the spec's monolithic upload); returns the digest."""
        digest = sha256_digest(data)
        started = self.request("POST", f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202, started.text
        done = self.request("PUT", started.headers["Location"], params={"digest": digest}, data=data)
        assert done.status_code == 201, done.text
        return digest

    def put_manifest(self, repository: str, reference: str, manifest: bytes, media_type: str) -> requests.Response:
        return self.request(
            "PUT", f"/v2/{repository}/manifests/{reference}", data=manifest, headers={"Content-Type": media_type}
        )

    def get_manifest(self, repository: str, reference: str, accept: Iterable[str]) -> requests.Response:
        return self.request("GET", f"/v2/{repository}/manifests/{reference}", headers={"Accept": ", ".join(accept)})

    def error_code(self, response: requests.Response) -> str:
        code: str = response.json()["errors"][0]["code"]
        return code
