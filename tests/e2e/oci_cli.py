"""The real OCI clients (crane, oras, cosign) run as a user would, against the emulator's registry face.

Each test gets its own HOME and DOCKER_CONFIG, so a login (and cosign's sigstore cache) never leaks
between tests or into the user's own configuration.
"""

from __future__ import annotations

import base64
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from ecr_tag_localenv.oci_clients import OciClientsError, find_client

# The password cosign's generate-key-pair encrypts the private key with, and sign reads it back.
COSIGN_PASSWORD = "e2e-test-key"


class OciCommandError(AssertionError):
    """A client exited non-zero; the message carries its command line and stderr."""


@dataclass(frozen=True)
class OciClients:
    """The pinned clients, each looked up when first run: a test needs only the ones it uses, and a missing
    one fails it with the command that builds it (never a skip)."""

    home: Path
    # An HTTP proxy for registry names that do not resolve, e.g. the emulator itself: it serves a request
    # in absolute form by its Host (another account's or region's registry, see oci_address). Go clients
    # never send a loopback address such as 127.0.0.1 through a proxy.
    proxy: str | None = None

    @property
    def docker_config(self) -> Path:
        return self.home / ".docker"

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.lower().endswith("_proxy")}
        env.update(
            HOME=str(self.home),
            DOCKER_CONFIG=str(self.docker_config),
            TUF_ROOT=str(self.home / ".sigstore"),
            COSIGN_PASSWORD=COSIGN_PASSWORD,
        )
        if self.proxy:
            env.update(HTTP_PROXY=self.proxy, HTTPS_PROXY=self.proxy)
        return env

    def run(
        self, tool: str, *args: str, input: bytes | None = None, cwd: Path | None = None, timeout: float = 120
    ) -> bytes:
        """Run ``tool`` (crane, oras or cosign) and return its stdout bytes; OciCommandError if it fails."""
        failure = ""
        try:
            binary = find_client(tool)
        except OciClientsError as exc:
            failure = str(exc)
        if failure:
            pytest.fail(failure, pytrace=False)
        self.home.mkdir(parents=True, exist_ok=True)
        done = subprocess.run(
            [str(binary), *args],
            input=input,
            capture_output=True,
            cwd=cwd or self.home,
            env=self.env(),
            timeout=timeout,
            check=False,
        )
        if done.returncode != 0:
            raise OciCommandError(
                f"`{tool} {' '.join(args)}` exited {done.returncode}:\n{done.stderr.decode(errors='replace')}"
            )
        return done.stdout

    def text(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        return self.run(tool, *args, cwd=cwd).decode().strip()

    def crane(self, *args: str) -> str:
        return self.text("crane", "--insecure", *args)

    def oras(self, *args: str, cwd: Path | None = None) -> str:
        # oras takes --plain-http per subcommand, after it.
        sub, *rest = args
        config = str(self.docker_config / "config.json")
        return self.text("oras", sub, "--plain-http", "--registry-config", config, *rest, cwd=cwd)

    def cosign(self, *args: str, cwd: Path | None = None) -> str:
        return self.text("cosign", *args, cwd=cwd)


def login(clients: OciClients, ecr_client: Any) -> str:
    """Log in as a user does with `aws ecr get-login-password`: user AWS, the token's password.

    GetAuthorizationToken returns a base64 ``AWS:<password>`` token and the registry's proxyEndpoint
    (https://docs.aws.amazon.com/AmazonECR/latest/APIReference/API_GetAuthorizationToken.html and
    https://docs.aws.amazon.com/AmazonECR/latest/userguide/registry_auth.html). Returns the registry
    host (``host:port``) that image references start with.
    """
    data = ecr_client.get_authorization_token()["authorizationData"][0]
    user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
    assert user == "AWS", f"ECR's token is for user AWS, got {user!r}"
    host: str = urlsplit(data["proxyEndpoint"]).netloc
    assert host, f"no host in proxyEndpoint {data['proxyEndpoint']!r}"
    clients.docker_config.mkdir(parents=True, exist_ok=True)
    clients.run("crane", "auth", "login", host, "-u", "AWS", "--password-stdin", input=password.encode())
    return host
