"""GetAuthorizationToken and the registry credentials it hands out, plus ECR's account settings.

moto answers GetAuthorizationToken with a fixed password and an ``expiresAt`` in 2015, which no
registry could check. Here the password is a signed statement of the account and the expiry time, so
the OCI face (:mod:`.oci_registry`) can check it without state: it survives ``/moto-api/reset`` as a
real token survives nothing in ECR changing.

ECR, GetAuthorizationToken (botocore service model): "The authorization token is valid for 12 hours";
"When the string is decoded, it is presented in the format user:password"; the user is ``AWS``
(ECR user guide, "Private registry authentication": ``docker login --username AWS``).

PutAccountSetting / GetAccountSetting are missing from moto; the emulator keeps them per registry
(account and region) because only ``BLOB_MOUNTING`` matters to it.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import secrets
import time
import weakref
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import InvalidParameterException
from moto.ecr.models import ECRBackend
from moto.ecr.responses import ECRResponse

from ecr_tag_localenv.oci_address import registry_host

USERNAME: Final = "AWS"
DEFAULT_TOKEN_TTL_SECONDS: Final = 12 * 60 * 60
_SECRET: Final = secrets.token_bytes(32)  # per process: tokens from another emulator run are refused
_token_ttl_seconds: float = DEFAULT_TOKEN_TTL_SECONDS


def set_token_ttl(seconds: float) -> None:
    """How long new tokens last (the emulator's ``--auth-token-ttl``; 0 makes them expired at once)."""
    global _token_ttl_seconds
    _token_ttl_seconds = seconds


@dataclass(frozen=True)
class Token:
    account: str
    expires_at: float


def _sign(payload: bytes) -> str:
    return hmac.new(_SECRET, payload, hashlib.sha256).hexdigest()


def issue_password(account: str, now: float | None = None) -> tuple[str, float]:
    """A registry password for ``account`` and when it expires (Unix seconds)."""
    expires_at = (time.time() if now is None else now) + _token_ttl_seconds
    payload = json.dumps({"account": account, "expiration": expires_at}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(payload).decode() + "." + _sign(payload), expires_at


def check_password(password: str, now: float | None = None) -> Token | None:
    """The token a password stands for, or None if it is forged, malformed or expired."""
    encoded, _, signature = password.partition(".")
    try:
        payload = base64.urlsafe_b64decode(encoded.encode())
    except (binascii.Error, ValueError):
        return None
    if not hmac.compare_digest(_sign(payload), signature):
        return None
    data = json.loads(payload)
    token = Token(str(data["account"]), float(data["expiration"]))
    if token.expires_at <= (time.time() if now is None else now):
        return None
    return token


def _get_authorization_token(self: ECRResponse) -> ActionResult:
    # registryIds is deprecated and "doesn't change the permissions scope of the authorization token"
    # (service model); ECR still answers one entry per id asked for.
    registry_ids = self._get_param("registryIds") or [self.current_account]
    password, expires_at = issue_password(self.current_account)
    token = base64.b64encode(f"{USERNAME}:{password}".encode()).decode()
    host = self.headers.get("Host", "127.0.0.1")
    data = []
    for registry_id in registry_ids:
        data.append(
            {
                "authorizationToken": token,
                "expiresAt": datetime.fromtimestamp(expires_at, UTC),
                "proxyEndpoint": f"http://{registry_host(registry_id, self.region, host)}",
            }
        )
    return ActionResult({"authorizationData": data})


# Account settings. Names and values from the service model (PutAccountSetting): BASIC_SCAN_TYPE_VERSION
# (AWS_NATIVE), REGISTRY_POLICY_SCOPE (V2), BLOB_MOUNTING (ENABLED / DISABLED). Defaults: blob mounting
# is off until turned on (ECR user guide, "Blob mounting in Amazon ECR": "When enabled ...").
_VALUES: Final = {
    "BASIC_SCAN_TYPE_VERSION": ("AWS_NATIVE",),
    "REGISTRY_POLICY_SCOPE": ("V2", "V1"),
    "BLOB_MOUNTING": ("ENABLED", "DISABLED"),
}
_DEFAULTS: Final = {"BASIC_SCAN_TYPE_VERSION": "AWS_NATIVE", "REGISTRY_POLICY_SCOPE": "V2", "BLOB_MOUNTING": "DISABLED"}
_settings: weakref.WeakKeyDictionary[ECRBackend, dict[str, str]] = weakref.WeakKeyDictionary()


class ValidationException(ServiceException):
    code = "ValidationException"


def _check_name(name: object) -> str:
    if not isinstance(name, str) or name not in _VALUES:
        raise ValidationException(f"Invalid account setting name '{name}'; valid names are {sorted(_VALUES)}")
    return name


def account_setting(backend: ECRBackend, name: str) -> str:
    return _settings.get(backend, {}).get(name, _DEFAULTS[name])


def blob_mounting_enabled(backend: ECRBackend) -> bool:
    return account_setting(backend, "BLOB_MOUNTING") == "ENABLED"


def _put_account_setting(self: ECRResponse) -> ActionResult:
    name = _check_name(self._get_param("name"))
    value = self._get_param("value")
    if value not in _VALUES[name]:
        raise InvalidParameterException(
            f"Invalid parameter at 'value' failed to satisfy constraint: '{name} must be one of {list(_VALUES[name])}'"
        )
    _settings.setdefault(self.ecr_backend, {})[name] = value
    return ActionResult({"name": name, "value": value})


def _get_account_setting(self: ECRResponse) -> ActionResult:
    name = _check_name(self._get_param("name"))
    return ActionResult({"name": name, "value": account_setting(self.ecr_backend, name)})


_applied = False


def apply() -> None:
    """Install GetAuthorizationToken and the account settings on moto's ECR (idempotent)."""
    global _applied
    if _applied:
        return
    ECRResponse.get_authorization_token = _get_authorization_token  # type: ignore[method-assign]
    ECRResponse.put_account_setting = _put_account_setting  # type: ignore[attr-defined]
    ECRResponse.get_account_setting = _get_account_setting  # type: ignore[attr-defined]
    _applied = True
