"""The ECR emulator's second face: the OCI distribution API (``/v2/``) over the same moto state as the ECR API.

Real ECR serves two APIs over one registry: the ECR API and the OCI distribution API at
``<account>.dkr.ecr.<region>.amazonaws.com``. Here both are on the emulator's one port; a request's Host
header picks the registry (:mod:`.oci_address`): ``127.0.0.1:PORT`` is the default account and region,
``<account>.dkr.ecr.<region>.localhost:PORT`` any other. Plain HTTP; clients take ``--insecure`` /
``--plain-http``.

What an image pushed through one face looks like through the other:
- manifests are written through moto's ``put_image`` (with the emulator's corrections: LayersNotFound,
  ReferencedImagesNotFound, immutable tags, digest of the exact bytes) and read through the corrected
  ``batch_get_image``, so the bytes are the ones stored;
- blobs live in :mod:`.ecr_blobs`; an upload finished here is also entered in moto's repository layers,
  so BatchCheckLayerAvailability and PutImage see it, and a layer pushed with CompleteLayerUpload is
  readable here.

Authentication as ECR's (ECR user guide, "Private registry authentication"): HTTP basic, user ``AWS``,
password from GetAuthorizationToken (:mod:`.ecr_auth`); an expired token is answered 401 with ECR's
message (as docker prints it). A token opens its own account's registries only (reads across accounts need repository
policies, not modelled here).

Where ECR differs from the OCI distribution spec, this follows ECR:
- repositories are not created by a push: NAME_UNKNOWN until CreateRepository (service model:
  InitiateLayerUpload and PutImage raise RepositoryNotFoundException);
- cross-repository mount only with the registry's ``BLOB_MOUNTING`` setting ``ENABLED``, only within the
  registry, only when ``from`` is given and both repositories use the same encryption; otherwise 202 and a
  new upload (ECR user guide, "Blob mounting in Amazon ECR");
- blobs cannot be deleted (405 UNSUPPORTED): ECR has no API to delete a layer; layers go with the images
  that use them (ECR API reference: BatchDeleteImage is the only delete, of images);
- digests are sha256 (ECR API reference, ImageIdentifier/imageDigest: "sha256 digest of the image
  manifest"; the emulator's store is sha256 only): a sha512 digest is answered DIGEST_INVALID / UNSUPPORTED;
- a manifest read by tag in a media type the client does not accept is MANIFEST_UNKNOWN, as BatchGetImage
  with acceptedMediaTypes (ECR API reference, BatchGetImage).

Fault rules and the call ledger of ``/_emulator/`` cover the ECR API only, not this face.

Locking: moto's backend is not thread-safe; every access to it holds the emulator's ``ecr_lock``.
Blob bytes are read and written without it, streamed in chunks (a 1 GiB layer never sits in memory).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import parse_qs, quote
from wsgiref.types import StartResponse, WSGIEnvironment

from moto.core.exceptions import ServiceException
from moto.ecr.exceptions import ImageAlreadyExistsException, RepositoryNotFoundException
from moto.ecr.models import ECRBackend, Repository, ecr_backends

from ecr_tag_localenv import ecr_auth, ecr_blobs, ecr_corrections
from ecr_tag_localenv.ecr_media import (
    ALL_MODERN_MANIFEST_TYPES,
    DOCKER_MANIFEST_V1,
    DOCKER_MANIFEST_V1_SIGNED,
    INDEX_TYPES,
    OCI_INDEX,
    sha256_digest,
)
from ecr_tag_localenv.oci_address import registry_of_host

log = logging.getLogger(__name__)

PREFIX: Final = "/v2/"
_CHUNK: Final = 1 << 20
# Registries should accept manifests of at least 4 MiB (OCI spec, "Pushing Manifests"); anything larger is
# refused (413) before it is held whole.
MANIFEST_MAX_BYTES: Final = 4 * 1024 * 1024
_ALL_MANIFEST_TYPES: Final = (*ALL_MODERN_MANIFEST_TYPES, DOCKER_MANIFEST_V1, DOCKER_MANIFEST_V1_SIGNED)
# ECR's repository name pattern (service model, RepositoryName) and tag length (ImageTag: 1..300).
_NAME_RE: Final = re.compile(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*")
_TAG_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,299}")
_ANY_DIGEST_RE: Final = re.compile(r"[a-z0-9]+(?:[.+_-][a-z0-9]+)*:[a-zA-Z0-9=_-]+")
_ROUTES: Final = (
    ("uploads", re.compile(r"(?P<name>.+)/blobs/uploads/?")),
    ("upload", re.compile(r"(?P<name>.+)/blobs/uploads/(?P<ref>[^/]+)")),
    ("blob", re.compile(r"(?P<name>.+)/blobs/(?P<ref>[^/]+)")),
    ("manifest", re.compile(r"(?P<name>.+)/manifests/(?P<ref>[^/]+)")),
    ("tags", re.compile(r"(?P<name>.+)/tags/list")),
    ("referrers", re.compile(r"(?P<name>.+)/referrers/(?P<ref>[^/]+)")),
)
EXPIRED_MESSAGE: Final = "Your authorization token has expired. Reauthenticate and try again."


class OciError(Exception):
    """An error answered in the distribution spec's format: ``{"errors": [{"code", "message", "detail"}]}``."""

    def __init__(self, status: int, code: str, message: str, headers: Iterable[tuple[str, str]] = ()) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = list(headers)


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: Iterable[bytes] = ()
    length: int | None = None


def _json(status: int, payload: object, content_type: str = "application/json", **headers: str) -> Response:
    body = json.dumps(payload).encode()
    return Response(status, [("Content-Type", content_type), *headers.items()], [body], len(body))


class _Body:
    """The request body, read in chunks at most once; whatever a handler leaves unread is drained."""

    def __init__(self, environ: WSGIEnvironment) -> None:
        self._stream = environ["wsgi.input"]
        raw = environ.get("CONTENT_LENGTH") or ""
        self._remaining: int | None = int(raw) if raw.isdigit() else None
        # werkzeug de-chunks a "Transfer-Encoding: chunked" body and marks the stream as ending by itself.
        self._terminated = bool(environ.get("wsgi.input_terminated")) and self._remaining is None
        if self._remaining is None and not self._terminated:
            self._remaining = 0

    @property
    def declared_length(self) -> int | None:
        return None if self._terminated else self._remaining

    def chunks(self) -> Iterator[bytes]:
        while True:
            if self._terminated:
                chunk = self._stream.read(_CHUNK)
                if not chunk:
                    self._terminated = False
                    self._remaining = 0
                    return
            else:
                if not self._remaining:
                    return
                chunk = self._stream.read(min(_CHUNK, self._remaining))
                if not chunk:
                    self._remaining = 0
                    return
                self._remaining -= len(chunk)
            yield chunk

    def read_at_most(self, limit: int) -> bytes:
        out = bytearray()
        for chunk in self.chunks():
            out += chunk
            if len(out) > limit:
                raise OciError(413, "SIZE_INVALID", f"manifest larger than {limit} bytes")
        return bytes(out)

    def drain(self) -> None:
        for _ in self.chunks():
            pass


@dataclass
class Request:
    method: str
    name: str
    ref: str
    query: dict[str, list[str]]
    environ: WSGIEnvironment
    body: _Body
    account: str
    region: str
    host: str

    def arg(self, key: str) -> str | None:
        values = self.query.get(key)
        return values[0] if values else None

    def header(self, name: str) -> str | None:
        key = "CONTENT_TYPE" if name == "Content-Type" else "HTTP_" + name.upper().replace("-", "_")
        value = self.environ.get(key)
        return str(value) if value else None


def _check_digest(digest: str) -> None:
    if ecr_blobs.DIGEST_RE.fullmatch(digest) is None:
        if _ANY_DIGEST_RE.fullmatch(digest) is not None:
            raise OciError(400, "DIGEST_INVALID", f"unsupported digest algorithm in {digest!r}: ECR uses sha256")
        raise OciError(400, "DIGEST_INVALID", f"invalid digest {digest!r}")


def _parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range a ``Range: bytes=...`` asks for, None for the whole blob; 416 if unsatisfiable."""
    if not header:
        return None
    unsatisfiable = OciError(
        416, "BLOB_UNKNOWN", f"range {header!r} not satisfiable", [("Content-Range", f"bytes */{size}")]
    )
    match = re.fullmatch(r"bytes=(\d*)-(\d*)", header.strip())
    if match is None or match.groups() == ("", ""):
        raise unsatisfiable
    first, last = match.groups()
    if first == "":
        start, end = max(0, size - int(last)), size - 1
    else:
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    if start >= size or start > end:
        raise unsatisfiable
    return start, end


def _file_chunks(digest: str, start: int, length: int) -> Iterator[bytes]:
    with ecr_blobs.store().open(digest) as f:
        f.seek(start)
        while length > 0:
            chunk = f.read(min(_CHUNK, length))
            if not chunk:
                return
            length -= len(chunk)
            yield chunk


def _artifact_type(manifest: dict[str, Any]) -> str | None:
    # OCI spec, "Listing Referrers": an image manifest without artifactType reports its config's mediaType.
    value = manifest.get("artifactType")
    if isinstance(value, str) and value:
        return value
    config = manifest.get("config")
    if isinstance(config, dict) and isinstance(config.get("mediaType"), str):
        return str(config["mediaType"])
    return None


class OciRegistry:
    """WSGI app for ``/v2/``; ``lock`` is the lock the emulator holds around every moto call."""

    def __init__(self, lock: threading.Lock) -> None:
        self.lock = lock
        self.handlers: dict[tuple[str, str], Callable[[Request], Response]] = {
            ("blob", "GET"): self.get_blob,
            ("blob", "DELETE"): self.delete_blob,
            ("uploads", "POST"): self.start_upload,
            ("upload", "GET"): self.upload_status,
            ("upload", "PATCH"): self.patch_upload,
            ("upload", "PUT"): self.finish_upload,
            ("upload", "DELETE"): self.cancel_upload,
            ("manifest", "GET"): self.get_manifest,
            ("manifest", "PUT"): self.put_manifest,
            ("manifest", "DELETE"): self.delete_manifest,
            ("tags", "GET"): self.list_tags,
            ("referrers", "GET"): self.list_referrers,
        }

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body = _Body(environ)
        try:
            response = self._handle(environ, body)
        except OciError as exc:
            payload = {"errors": [{"code": exc.code, "message": exc.message, "detail": {}}]}
            response = _json(exc.status, payload)
            response.headers += exc.headers
        except Exception:
            log.exception("OCI face failed on %s %s", environ.get("REQUEST_METHOD"), environ.get("PATH_INFO"))
            response = _json(500, {"errors": [{"code": "UNKNOWN", "message": "internal error", "detail": {}}]})
        body.drain()  # an unread body would be taken for the next request on a kept-alive connection
        headers = [("Docker-Distribution-API-Version", "registry/2.0"), *response.headers]
        if response.length is not None:
            headers.append(("Content-Length", str(response.length)))
        start_response(f"{response.status} {HTTPStatus(response.status).phrase}", headers)
        if environ.get("REQUEST_METHOD") == "HEAD":
            close = getattr(response.body, "close", None)
            if close is not None:
                close()
            return []
        return response.body

    # request plumbing

    def _handle(self, environ: WSGIEnvironment, body: _Body) -> Response:
        host = str(environ.get("HTTP_HOST") or f"{environ.get('SERVER_NAME')}:{environ.get('SERVER_PORT')}")
        account, region = registry_of_host(host)
        self._authenticate(environ, account, host)
        path = str(environ.get("PATH_INFO", ""))
        rest = path[len(PREFIX) :] if path.startswith(PREFIX) else ""
        method = str(environ.get("REQUEST_METHOD", "GET"))
        if rest == "":
            if method not in ("GET", "HEAD"):
                raise OciError(405, "UNSUPPORTED", f"{method} /v2/ is not supported")
            return _json(200, {})
        for kind, pattern in _ROUTES:
            match = pattern.fullmatch(rest)
            if match is None:
                continue
            name = match.group("name")
            if _NAME_RE.fullmatch(name) is None or len(name) > 256:
                raise OciError(400, "NAME_INVALID", f"invalid repository name {name!r}")
            request = Request(
                method=method,
                name=name,
                ref=match.groupdict().get("ref") or "",
                query=parse_qs(str(environ.get("QUERY_STRING", "")), keep_blank_values=True),
                environ=environ,
                body=body,
                account=account,
                region=region,
                host=host,
            )
            handler = self.handlers.get((kind, "GET" if method == "HEAD" else method))
            if handler is None:
                raise OciError(405, "UNSUPPORTED", f"{method} is not supported on this endpoint")
            return handler(request)
        raise OciError(404, "NOT_FOUND", f"no route for {path}")

    def _authenticate(self, environ: WSGIEnvironment, account: str, host: str) -> None:
        challenge = [("WWW-Authenticate", f'Basic realm="http://{host}/",service="ecr.amazonaws.com"')]
        header = str(environ.get("HTTP_AUTHORIZATION") or "")
        scheme, _, encoded = header.partition(" ")
        if scheme.lower() != "basic" or not encoded:
            raise OciError(401, "UNAUTHORIZED", "Not Authorized", challenge)
        try:
            user, _, password = base64.b64decode(encoded.strip(), validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise OciError(401, "UNAUTHORIZED", "Not Authorized", challenge) from None
        token = ecr_auth.check_password(password) if user == ecr_auth.USERNAME else None
        if token is None:
            expired = user == ecr_auth.USERNAME and ecr_auth.check_password(password, now=0.0) is not None
            raise OciError(401, "UNAUTHORIZED", EXPIRED_MESSAGE if expired else "Not Authorized", challenge)
        if token.account != account:
            raise OciError(403, "DENIED", f"the token of account {token.account} does not open registry {account}")

    def _backend(self, request: Request) -> ECRBackend:
        backend: ECRBackend = ecr_backends[request.account][request.region]
        return backend

    def _repository(self, request: Request, name: str | None = None) -> tuple[ECRBackend, Repository]:
        """Caller holds the lock."""
        backend = self._backend(request)
        try:
            return backend, backend._get_repository(name or request.name)
        except RepositoryNotFoundException as exc:
            raise OciError(404, "NAME_UNKNOWN", exc.message) from None

    def _location(self, request: Request, suffix: str) -> str:
        return f"/v2/{request.name}/{suffix}"

    # blobs

    def get_blob(self, request: Request) -> Response:
        digest = request.ref
        _check_digest(digest)
        blobs = ecr_blobs.store()
        with self.lock:
            self._repository(request)
        if not blobs.has(request.account, request.region, request.name, digest):
            raise OciError(404, "BLOB_UNKNOWN", f"blob {digest} is not in repository {request.name}")
        size = blobs.size(digest)
        headers = [
            ("Content-Type", "application/octet-stream"),
            ("Docker-Content-Digest", digest),
            ("Accept-Ranges", "bytes"),
            ("ETag", f'"{digest}"'),
        ]
        span = _parse_range(request.header("Range"), size)
        if span is None:
            body = _file_chunks(digest, 0, size) if request.method == "GET" else iter(())
            return Response(200, headers, body, size)
        start, end = span
        headers.append(("Content-Range", f"bytes {start}-{end}/{size}"))
        body = _file_chunks(digest, start, end - start + 1) if request.method == "GET" else iter(())
        return Response(206, headers, body, end - start + 1)

    def delete_blob(self, request: Request) -> Response:
        raise OciError(405, "UNSUPPORTED", "Amazon ECR does not delete layers; delete the images that use them")

    def _enter_blob(self, request: Request, digest: str, size: int) -> None:
        """Make a stored blob part of the repository, for both faces. Caller holds the lock."""
        _, repository = self._repository(request)
        ecr_blobs.store().add(request.account, request.region, request.name, digest)
        repository.layers[digest] = size

    def _blob_created(self, request: Request, digest: str) -> Response:
        return Response(
            201,
            [("Location", self._location(request, f"blobs/{digest}")), ("Docker-Content-Digest", digest)],
            length=0,
        )

    def _upload_status(self, request: Request, upload: ecr_blobs.Upload, status: int) -> Response:
        return Response(
            status,
            [
                ("Location", self._location(request, f"blobs/uploads/{upload.upload_id}")),
                ("Range", f"0-{max(upload.size - 1, 0)}"),
                ("Docker-Upload-UUID", upload.upload_id),
            ],
            length=0,
        )

    def start_upload(self, request: Request) -> Response:
        blobs = ecr_blobs.store()
        mount, source = request.arg("mount"), request.arg("from")
        digest = request.arg("digest")
        with self.lock:
            backend, repository = self._repository(request)
            if mount and source and self._may_mount(request, backend, repository, mount, source):
                self._enter_blob(request, mount, blobs.size(mount))
                return self._blob_created(request, mount)
        if digest is not None:
            # Monolithic upload in the POST itself (OCI spec, "Single POST").
            _check_digest(digest)
            stored, size = blobs.put_stream(request.body.chunks())
            if stored != digest:
                raise OciError(400, "DIGEST_INVALID", f"the bytes hash to {stored}, not {digest}")
            with self.lock:
                self._enter_blob(request, digest, size)
            return self._blob_created(request, digest)
        upload = blobs.begin_upload(request.account, request.region, request.name)
        return self._upload_status(request, upload, 202)

    def _may_mount(self, request: Request, backend: ECRBackend, target: Repository, digest: str, source: str) -> bool:
        """ECR user guide, "Blob mounting in Amazon ECR": only with BLOB_MOUNTING on, within one registry,
        between repositories with identical encryption. Caller holds the lock."""
        if ecr_blobs.DIGEST_RE.fullmatch(digest) is None or not ecr_auth.blob_mounting_enabled(backend):
            return False
        origin = backend.repositories.get(source)
        if origin is None or origin.encryption_configuration != target.encryption_configuration:
            return False
        return ecr_blobs.store().has(request.account, request.region, source, digest)

    def _upload(self, request: Request) -> ecr_blobs.Upload:
        try:
            return ecr_blobs.store().upload(request.ref, request.account, request.region, request.name)
        except ecr_blobs.BlobError:
            raise OciError(404, "BLOB_UPLOAD_UNKNOWN", f"no upload {request.ref!r} in {request.name}") from None

    def upload_status(self, request: Request) -> Response:
        return self._upload_status(request, self._upload(request), 204)

    def _append(self, request: Request, upload: ecr_blobs.Upload) -> None:
        content_range = request.header("Content-Range")
        if content_range:
            match = re.fullmatch(r"(?:bytes[ =])?(\d+)-(\d+)", content_range.strip())
            length = request.body.declared_length
            if (
                match is None
                or int(match.group(1)) != upload.size
                or (length is not None and int(match.group(2)) - int(match.group(1)) + 1 != length)
            ):
                # Chunks must arrive in order (OCI spec, "Pushing a blob in chunks"): 416, upload kept.
                status = self._upload_status(request, upload, 416)
                raise OciError(
                    416,
                    "BLOB_UPLOAD_INVALID",
                    f"chunk {content_range} does not follow byte {upload.size}",
                    status.headers,
                )
        upload.append(request.body.chunks())

    def patch_upload(self, request: Request) -> Response:
        upload = self._upload(request)
        self._append(request, upload)
        return self._upload_status(request, upload, 202)

    def finish_upload(self, request: Request) -> Response:
        digest = request.arg("digest")
        if not digest:
            raise OciError(400, "DIGEST_INVALID", "the digest query parameter is required")
        _check_digest(digest)
        upload = self._upload(request)
        self._append(request, upload)
        blobs = ecr_blobs.store()
        if upload.digest != digest:
            blobs.cancel_upload(upload.upload_id)
            raise OciError(400, "DIGEST_INVALID", f"the bytes hash to {upload.digest}, not {digest}")
        stored, size = blobs.finish_upload(upload.upload_id)
        with self.lock:
            self._enter_blob(request, stored, size)
        return self._blob_created(request, stored)

    def cancel_upload(self, request: Request) -> Response:
        upload = self._upload(request)
        ecr_blobs.store().cancel_upload(upload.upload_id)
        return Response(204, length=0)

    # manifests

    def _image_id(self, request: Request) -> dict[str, str]:
        ref = request.ref
        if ":" in ref:
            _check_digest(ref)
            return {"imageDigest": ref}
        if _TAG_RE.fullmatch(ref) is None:
            raise OciError(400, "TAG_INVALID", f"invalid tag {ref!r}")
        return {"imageTag": ref}

    def get_manifest(self, request: Request) -> Response:
        image_id = self._image_id(request)
        # Several Accept headers reach WSGI joined by commas.
        accepted = [t.split(";")[0].strip() for t in (request.header("Accept") or "").split(",")]
        known = [t for t in accepted if t in _ALL_MANIFEST_TYPES]
        with self.lock:
            backend, _ = self._repository(request)
            found = ecr_corrections.batch_get_image(
                backend, request.name, None, [image_id], known or list(_ALL_MANIFEST_TYPES)
            )
        if not found["images"]:
            reason = found["failures"][0]["failureReason"] if found["failures"] else "not found"
            raise OciError(404, "MANIFEST_UNKNOWN", f"{request.ref}: {reason}")
        image = found["images"][0]
        body = str(image["imageManifest"]).encode()
        headers = [
            ("Content-Type", str(image["imageManifestMediaType"])),
            ("Docker-Content-Digest", sha256_digest(body)),
            ("ETag", f'"{sha256_digest(body)}"'),
        ]
        return Response(200, headers, [body] if request.method == "GET" else [], len(body))

    def put_manifest(self, request: Request) -> Response:
        image_id = self._image_id(request)
        data = request.body.read_at_most(MANIFEST_MAX_BYTES)
        try:
            text = data.decode("utf-8")
            parsed = json.loads(text)
        except (UnicodeDecodeError, ValueError):
            raise OciError(400, "MANIFEST_INVALID", "the manifest is not JSON in UTF-8") from None
        if not isinstance(parsed, dict):
            raise OciError(400, "MANIFEST_INVALID", "the manifest is not a JSON object")
        digest = sha256_digest(data)
        if "imageDigest" in image_id and image_id["imageDigest"] != digest:
            raise OciError(400, "DIGEST_INVALID", f"the manifest hashes to {digest}, not {image_id['imageDigest']}")
        content_type = (request.header("Content-Type") or "").split(";")[0].strip()
        media_type = content_type or (parsed.get("mediaType") if isinstance(parsed.get("mediaType"), str) else None)
        with self.lock:
            backend, _ = self._repository(request)
            try:
                backend.put_image(request.name, text, image_id.get("imageTag"), media_type, digest)  # type: ignore[arg-type]
            except ImageAlreadyExistsException:
                pass  # the same bytes under the same tag: pushing again is not an error on this face
            except ServiceException as exc:
                raise OciError(*_MANIFEST_ERRORS.get(exc.code, (400, "MANIFEST_INVALID")), exc.message) from None
        headers = [("Location", self._location(request, f"manifests/{digest}")), ("Docker-Content-Digest", digest)]
        subject = parsed.get("subject")
        if isinstance(subject, dict) and isinstance(subject.get("digest"), str):
            headers.append(("OCI-Subject", subject["digest"]))
        return Response(201, headers, length=0)

    def delete_manifest(self, request: Request) -> Response:
        image_id = self._image_id(request)
        with self.lock:
            backend, _ = self._repository(request)
            result = backend.batch_delete_image(request.name, image_ids=[image_id])
        failures = result.get("failures") or []
        if failures:
            failure = failures[0]
            if failure.get("failureCode") == "ImageNotFound":
                raise OciError(404, "MANIFEST_UNKNOWN", f"{request.ref}: {failure.get('failureReason')}")
            raise OciError(400, "UNSUPPORTED", f"{request.ref}: {failure.get('failureReason')}")
        return Response(202, length=0)

    # listings

    def list_tags(self, request: Request) -> Response:
        with self.lock:
            _, repository = self._repository(request)
            tags = sorted({tag for image in repository.images for tag in image.image_tags if tag})
        last = request.arg("last")
        if last:
            tags = [t for t in tags if t > last]
        headers: dict[str, str] = {}
        count = request.arg("n")
        if count is not None and count != "":
            if not count.isdigit():
                raise OciError(400, "PAGINATION_NUMBER_INVALID", f"invalid n {count!r}")
            n = int(count)
            if len(tags) > n and n > 0:
                headers["Link"] = f'</v2/{request.name}/tags/list?n={n}&last={quote(tags[n - 1])}>; rel="next"'
            tags = tags[:n]
        return _json(200, {"name": request.name, "tags": tags}, **headers)

    def list_referrers(self, request: Request) -> Response:
        subject = request.ref
        if _ANY_DIGEST_RE.fullmatch(subject) is None:
            raise OciError(400, "DIGEST_INVALID", f"invalid digest {subject!r}")
        wanted = request.arg("artifactType")
        descriptors: list[dict[str, Any]] = []
        with self.lock:
            _, repository = self._repository(request)
            stored = [(image.image_manifest, image.image_manifest_media_type) for image in repository.images]
        for text, media_type in stored:
            try:
                manifest = json.loads(text)
            except ValueError:
                continue
            if not isinstance(manifest, dict):
                continue
            points_at = manifest.get("subject")
            if not isinstance(points_at, dict) or points_at.get("digest") != subject:
                continue
            artifact_type = _artifact_type(manifest) if media_type not in INDEX_TYPES else manifest.get("artifactType")
            if wanted and artifact_type != wanted:
                continue
            body = text.encode()
            descriptor: dict[str, Any] = {"mediaType": media_type, "digest": sha256_digest(body), "size": len(body)}
            if artifact_type:
                descriptor["artifactType"] = artifact_type
            if isinstance(manifest.get("annotations"), dict):
                descriptor["annotations"] = manifest["annotations"]
            descriptors.append(descriptor)
        headers = {"OCI-Filters-Applied": "artifactType"} if wanted else {}
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return _json(200, index, OCI_INDEX, **headers)


# moto/ECR error codes from put_image -> (HTTP status, OCI error code).
_MANIFEST_ERRORS: Final = {
    "LayersNotFoundException": (400, "MANIFEST_BLOB_UNKNOWN"),
    "ReferencedImagesNotFoundException": (400, "MANIFEST_BLOB_UNKNOWN"),
    "ImageDigestDoesNotMatchException": (400, "DIGEST_INVALID"),
    "ImageTagAlreadyExistsException": (400, "TAG_INVALID"),
    "RepositoryNotFoundException": (404, "NAME_UNKNOWN"),
    "InvalidParameterException": (400, "MANIFEST_INVALID"),
}


def apply() -> None:
    """Install what this face needs on moto (GetAuthorizationToken, account settings)."""
    ecr_auth.apply()
