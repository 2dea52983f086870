"""The HTTP session kopf talks to the Kubernetes API with: kopf's own, but with a bounded pool.

kopf's built-in session has no connection limit, so reconciling a thousand resources at once opens
a TLS connection per in-flight request and keeps them pooled (about 128 KiB of TLS buffers each:
~200 MB measured at 1,000 resources). A bounded pool queues those requests instead.
"""

from __future__ import annotations

import warnings
from typing import Any

import aiohttp
import kopf

from . import __version__


def session_for(info: kopf.ConnectionInfo, limit: int) -> kopf.AiohttpSession:
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        auth = info.as_aiohttp_basic_auth()
    session = aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=limit, ssl=info.as_ssl_context()),
        headers={**info.as_http_headers(), "User-Agent": f"ecr-tag-operator/{__version__}"},
        auth=auth,
        proxy=info.proxy_url,
        trust_env=info.trust_env,
    )
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
