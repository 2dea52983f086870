"""GetDownloadUrlForLayer, and the layer downloads its URLs lead to, served by the emulator itself.

Service model (botocore ``ecr/2015-09-21``): GetDownloadUrlForLayer "Retrieves the pre-signed Amazon S3
download URL corresponding to an image layer. You can only get URLs for image layers that are referenced in
an image." Errors: LayersNotFoundException (the repository has no such layer), LayerInaccessibleException
("The specified layer is not available because it is not associated with an image"),
RepositoryNotFoundException, InvalidParameterException. moto raises NotImplementedError.

The URL points at this emulator (the host the client called), under ``/_emulator/layers/``, and carries an
expiry and an HMAC-SHA256 signature over path and expiry with a key made at process start, so it works
without credentials, for a limited time, like S3's pre-signed URLs. ECR's documentation gives no lifetime;
``download_url_seconds`` (:mod:`.ecr_settings`) sets it. Answers follow S3's for a pre-signed GET:
200 with the blob, 206 for a satisfiable single ``Range`` (RFC 9110 byte ranges), 416 for an unsatisfiable
one; 403 ``AccessDenied`` "Request has expired" once expired and 403 ``SignatureDoesNotMatch`` for a URL
that was altered; 404 ``NoSuchKey`` when the repository no longer has the layer. Bytes are streamed from
the blob store in chunks, never read whole. A fault rule (``cut_after_bytes`` in :mod:`.ecr_faults`) cuts
a download after N bytes by closing the connection.
"""

from __future__ import annotations

import hmac
import json
import re
import secrets
import socket
import time
import urllib.parse
from collections.abc import Iterator
from hashlib import sha256
from http import HTTPStatus
from typing import Any, BinaryIO, Final
from wsgiref.types import StartResponse, WSGIEnvironment

from moto.core.exceptions import ServiceException
from moto.core.responses import ActionResult
from moto.ecr.exceptions import InvalidParameterException
from moto.ecr.models import Repository
from moto.ecr.responses import ECRResponse

from ecr_tag_localenv import ecr_blobs, ecr_settings
from ecr_tag_localenv.ecr_faults import LAYERS_PREFIX, CallLedger, FaultInjector

_KEY: Final = secrets.token_bytes(32)
_CHUNK: Final = 256 * 1024
_DIGEST_RE: Final = re.compile(r"sha256:[a-f0-9]{64}")
_RANGE_RE: Final = re.compile(r"bytes=(\d*)-(\d*)")


class LayersNotFoundException(ServiceException):
    code = "LayersNotFoundException"


class LayerInaccessibleException(ServiceException):
    code = "LayerInaccessibleException"


def _signature(parts: tuple[str, ...], expires_ms: int) -> str:
    return hmac.new(_KEY, "\n".join([*parts, str(expires_ms)]).encode(), sha256).hexdigest()


def signed_path(account: str, region: str, repository: str, digest: str, lifetime_s: float) -> str:
    parts = (account, region, digest, repository)
    path = LAYERS_PREFIX + "/".join(urllib.parse.quote(p, safe="") for p in parts)
    expires_ms = int((time.time() + lifetime_s) * 1000)
    return f"{path}?{urllib.parse.urlencode({'expires': expires_ms, 'signature': _signature(parts, expires_ms)})}"


def _referenced_blobs(repository: Repository) -> set[str]:
    """Config and layer digests of the repository's images (what ECR hands out download URLs for)."""
    found: set[str] = set()
    for image in repository.images:
        try:
            manifest = json.loads(image.image_manifest)
        except ValueError:
            continue
        if not isinstance(manifest, dict):
            continue
        config = manifest.get("config")
        if isinstance(config, dict) and isinstance(config.get("digest"), str):
            found.add(config["digest"])
        for key, field in (("layers", "digest"), ("fsLayers", "blobSum")):
            for item in manifest.get(key) or []:
                if isinstance(item, dict) and isinstance(item.get(field), str):
                    found.add(item[field])
    return found


def _get_download_url_for_layer(self: ECRResponse) -> ActionResult:
    name = self._get_param("repositoryName")
    digest = self._get_param("layerDigest")
    backend = self.ecr_backend  # the registry registryId names, access checked (ecr_registries)
    repository = backend._get_repository(name, self._get_param("registryId"))
    if not isinstance(digest, str) or not _DIGEST_RE.fullmatch(digest):
        raise InvalidParameterException(f"Invalid parameter at 'layerDigest' failed to satisfy constraint: '{digest}'")
    where = f"within the repository with name '{repository.name}' in the registry with id '{repository.registry_id}'"
    store = ecr_blobs.store()
    if digest not in repository.layers or not store.has(
        repository.registry_id, backend.region_name, repository.name, digest
    ):
        raise LayersNotFoundException(f"The layer with digest '{digest}' does not exist {where}")
    if digest not in _referenced_blobs(repository):
        raise LayerInaccessibleException(f"The layer with digest '{digest}' {where} is not associated with an image")
    host = self.headers.get("Host") or "127.0.0.1"
    path = signed_path(
        repository.registry_id,
        backend.region_name,
        repository.name,
        digest,
        ecr_settings.current().download_url_seconds,
    )
    return ActionResult({"downloadUrl": f"http://{host}{path}", "layerDigest": digest})


def _s3_error(start_response: StartResponse, status: int, code: str, message: str) -> list[bytes]:
    body = (
        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code><Message>{message}</Message></Error>'
    ).encode()
    start_response(
        f"{status} {HTTPStatus(status).phrase}",
        [("Content-Type", "application/xml"), ("Content-Length", str(len(body)))],
    )
    return [body]


def _byte_range(header: str | None, size: int) -> tuple[int, int] | bool | None:
    """(first, last) for a satisfiable single range; None to serve it all; False if unsatisfiable."""
    if not header:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None  # several ranges or another unit: a server may ignore Range and send everything
    first_text, last_text = match.groups()
    if not first_text:
        if not last_text or int(last_text) == 0:
            return False if last_text else None
        return max(0, size - int(last_text)), size - 1
    first = int(first_text)
    last = min(int(last_text), size - 1) if last_text else size - 1
    if last_text and int(last_text) < first:
        return None  # invalid range: ignored
    if first >= size:
        return False
    return first, last


class LayerDownloads:
    """WSGI app for ``/_emulator/layers/ACCOUNT/REGION/DIGEST/REPOSITORY?expires=&signature=``."""

    def __init__(self, injector: FaultInjector, ledger: CallLedger) -> None:
        self.injector = injector
        self.ledger = ledger

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Any:
        method = environ.get("REQUEST_METHOD", "GET")
        if method not in ("GET", "HEAD"):
            return _s3_error(start_response, 405, "MethodNotAllowed", f"{method} is not allowed on a layer")
        path: str = environ.get("PATH_INFO", "")
        query = urllib.parse.parse_qs(environ.get("QUERY_STRING", ""))
        try:
            expires_ms = int(query["expires"][0])
            signature = query["signature"][0]
        except (KeyError, ValueError, IndexError):
            return _s3_error(
                start_response, 403, "AccessDenied", "Query-string authentication requires expires and signature"
            )
        # PATH_INFO is decoded: the repository (last, quoted when handed out) keeps its slashes.
        parts = tuple(path[len(LAYERS_PREFIX) :].split("/", 3))
        if len(parts) != 4:
            return _s3_error(start_response, 404, "NoSuchKey", "The specified key does not exist.")
        account, region, digest, repository = parts
        if not hmac.compare_digest(signature, _signature(parts, expires_ms)):
            return _s3_error(
                start_response,
                403,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            )
        if time.time() * 1000 >= expires_ms:
            return _s3_error(start_response, 403, "AccessDenied", "Request has expired")
        store = ecr_blobs.store()
        if not store.has(account, region, repository, digest):
            return _s3_error(start_response, 404, "NoSuchKey", "The specified key does not exist.")
        size = store.size(digest)
        wanted = _byte_range(environ.get("HTTP_RANGE"), size)
        headers = [("Content-Type", "application/octet-stream"), ("Accept-Ranges", "bytes")]
        if wanted is False:
            start_response(
                "416 Range Not Satisfiable", [*headers, ("Content-Range", f"bytes */{size}"), ("Content-Length", "0")]
            )
            return [b""]
        first, last = wanted if isinstance(wanted, tuple) else (0, size - 1)
        length = last - first + 1
        if isinstance(wanted, tuple):
            start_response(
                "206 Partial Content",
                [*headers, ("Content-Range", f"bytes {first}-{last}/{size}"), ("Content-Length", str(length))],
            )
        else:
            start_response("200 OK", [*headers, ("Content-Length", str(size))])
        if method == "HEAD":
            return [b""]
        cut = self.injector.download_cut()
        return self._stream(store.open(digest), first, length, cut, environ.get("werkzeug.socket"))

    def _stream(
        self, blob: BinaryIO, first: int, length: int, cut: int | None, sock: socket.socket | None
    ) -> Iterator[bytes]:
        sent = 0
        try:
            blob.seek(first)
            budget = length if cut is None else min(length, cut)
            while sent < budget:
                chunk = blob.read(min(_CHUNK, budget - sent))
                if not chunk:
                    break
                sent += len(chunk)
                yield chunk
            if cut is not None and cut < length:
                # Close the connection mid-body, as a dropped transfer does: the client has the headers
                # (Content-Length of the whole) and ``cut`` bytes, then end of stream.
                if sock is not None:
                    sock.shutdown(socket.SHUT_RDWR)
                raise ConnectionAbortedError(f"layer download cut after {sent} bytes by a fault rule")
        finally:
            blob.close()
            self.ledger.record_download(sent)


_applied = False


def apply() -> None:
    """Serve GetDownloadUrlForLayer (idempotent)."""
    global _applied
    if _applied:
        return
    ECRResponse.get_download_url_for_layer = _get_download_url_for_layer  # type: ignore[method-assign,assignment]
    _applied = True
