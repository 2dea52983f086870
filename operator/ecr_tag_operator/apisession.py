"""HTTP sessions to the Kubernetes API: kopf's own, but with a bounded pool; and the drift
scheduler's, which reads objects and patches their status outside kopf's handlers.

kopf's built-in session has no connection limit, so reconciling a thousand resources at once opens
a TLS connection per in-flight request and keeps them pooled (about 128 KiB of TLS buffers each:
~200 MB measured at 1,000 resources). A bounded pool queues those requests instead.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import warnings
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import aiohttp
import kopf

from . import __version__

if TYPE_CHECKING:
    from .core import Event

COMPONENT = "ecr-tag-operator"
log = logging.getLogger(__name__)


def _client(
    info: kopf.ConnectionInfo, limit: int, timeout: aiohttp.ClientTimeout | None = None
) -> aiohttp.ClientSession:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        auth = info.as_aiohttp_basic_auth()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        # kopf names its field manager after the User-Agent: both sessions write as one manager.
        headers={**info.as_http_headers(), "User-Agent": f"ecr-tag-operator/{__version__}"},
        auth=auth,
        proxy=info.proxy_url,
        trust_env=info.trust_env,
        timeout=timeout or aiohttp.ClientTimeout(),
    )


def session_for(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    session = _client(info, limit)
    return kopf.AiohttpSession(
        aiohttp_session=session,
        server=info.server,
        priority=info.priority,
        default_namespace=info.default_namespace,
        expiration=info.expiration,
    )


def credentials(settings: kopf.OperatorSettings, logger: kopf.Logger, **kwargs: Any) -> kopf.ConnectionInfo | None:
    """kopf's own credential sources, in kopf's order: in-cluster service account, then kubeconfig."""
    return kopf.login_with_service_account(settings=settings, logger=logger, **kwargs) or kopf.login_with_kubeconfig(
        settings=settings, logger=logger, **kwargs
    )


class KubeObjects:
    """GET an object and merge-patch its status, with the credentials kopf last logged in with.

    A status patch carries the resourceVersion the check read, so the API server refuses it (409)
    when the object changed meanwhile; the patch is partial, never a whole-object PUT.
    """

    def __init__(
        self,
        credentials: Callable[[], kopf.ConnectionInfo | None],
        path: str,
        limit: int,
        connect_timeout: float,
        request_timeout: float,
        kind: str = "EcrImageTag",
    ) -> None:
        self._credentials = credentials
        self._kind = kind
        # /apis/<group>/<version>/... -> <group>/<version>, for an event's involvedObject.
        self._api_version = "/".join(path.split("/")[2:4])
        self._path = path  # e.g. /apis/ecrtag.dev/v1alpha1/namespaces/{namespace}/ecrimagetags/{name}
        self._limit = limit
        self._timeout = aiohttp.ClientTimeout(total=request_timeout, sock_connect=connect_timeout)
        self._info: kopf.ConnectionInfo | None = None
        self._session: aiohttp.ClientSession | None = None

    async def _connected(self) -> tuple[aiohttp.ClientSession, str]:
        info = self._credentials()
        if info is None:
            raise ConnectionError("kopf has not logged in to the Kubernetes API yet")
        if self._session is None or info is not self._info:  # kopf logged in anew: follow it
            old, self._session, self._info = self._session, _client(info, self._limit, self._timeout), info
            if old is not None:
                await old.close()
        return self._session, info.server.rstrip("/")

    def _url(self, server: str, namespace: str, name: str) -> str:
        return server + self._path.format(namespace=quote(namespace, safe=""), name=quote(name, safe=""))

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        session, server = await self._connected()
        async with session.get(self._url(server, namespace, name)) as response:
            if response.status == 404:
                return None
            response.raise_for_status()
            body: dict[str, Any] = await response.json()
            return body

    async def patch_status(self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str) -> bool:
        """True when written; False when the object changed or went since it was read."""
        return await self.patch_status_version(namespace, name, status, resource_version) is not None

    async def patch_status_version(
        self, namespace: str, name: str, status: Mapping[str, Any], resource_version: str
    ) -> str | None:
        """The object's resourceVersion after the patch; None when it changed or went since it was read."""
        session, server = await self._connected()
        patch = {"metadata": {"resourceVersion": resource_version}, "status": dict(status)}
        async with session.patch(
            self._url(server, namespace, name) + "/status",
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as response:
            if response.status in (404, 409):
                return None
            response.raise_for_status()
            body = await response.json()
            return str((body.get("metadata") or {}).get("resourceVersion") or "") or None

    async def post_event(self, involved: Mapping[str, Any], event: Event) -> None:
        """A core v1 Event about an object (its metadata), as kopf posts its own: the scheduler runs
        outside kopf's handlers, so it posts through the Events API with this session."""
        session, server = await self._connected()
        namespace = str(involved.get("namespace"))
        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        body = {
            "metadata": {"namespace": namespace, "generateName": f"{involved.get('name')}."},
            "involvedObject": {
                "apiVersion": self._api_version,
                "kind": self._kind,
                "name": involved.get("name"),
                "namespace": namespace,
                "uid": involved.get("uid"),
                "resourceVersion": involved.get("resourceVersion"),
            },
            "type": event.type,
            "reason": event.reason,
            "message": event.message,
            "source": {"component": COMPONENT},
            "reportingComponent": COMPONENT,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "eventTime": None,
            "count": 1,
        }
        url = f"{server}/api/v1/namespaces/{quote(namespace, safe='')}/events"
        async with session.post(url, json=body) as response:
            response.raise_for_status()

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


class StatusProgress:
    """ports.CopyProgress for one object, called on the thread its reconcile runs on (one of kopf's sync
    handler threads or the drift scheduler's): each status patch is sent on the event loop through
    ``store`` and waited for, so patches go out one at a time and none is left in flight when the
    reconcile writes its own status.

    Every patch carries a resourceVersion precondition, chained from the one the reconcile read: a
    change by anyone else meanwhile (409) stops the progress patches of this reconcile, never
    overwriting a newer status. ``resource_version`` and ``written`` tell the drift scheduler what its
    final patch must follow.
    """

    def __init__(
        self,
        store: KubeObjects,
        loop: asyncio.AbstractEventLoop,
        meta: Mapping[str, Any],
        timeout: float,
        moved: Callable[[int, int], None],
    ) -> None:
        self._store = store
        self._loop = loop
        self._namespace = str(meta.get("namespace"))
        self._name = str(meta.get("name"))
        self.resource_version = str(meta.get("resourceVersion"))
        self._timeout = timeout
        self._moved = moved
        self._stopped = False
        self.written: dict[str, Any] = {}  # the status keys this reconcile's progress patches set

    def status(self, patch: Mapping[str, Any]) -> bool:
        if self._stopped or self._on_loop():
            return False
        future = asyncio.run_coroutine_threadsafe(
            self._store.patch_status_version(self._namespace, self._name, patch, self.resource_version), self._loop
        )
        try:
            version = future.result(self._timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            log.info("copy progress of %s/%s not written in %.0f s", self._namespace, self._name, self._timeout)
            return False
        except Exception as exc:  # progress is worth a log line, never a failed copy
            log.info("copy progress of %s/%s not written: %s", self._namespace, self._name, exc)
            return False
        if version is None:
            self._stopped = True  # changed by someone else: the reconcile's own write decides what shows
            log.info("copy progress of %s/%s stopped: the object changed meanwhile", self._namespace, self._name)
            return False
        self.resource_version = version
        self.written.update(patch)
        return True

    def moved(self, blobs: int, size: int) -> None:
        self._moved(blobs, size)

    def _on_loop(self) -> bool:
        """Waiting for the loop from its own thread would never end."""
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False
