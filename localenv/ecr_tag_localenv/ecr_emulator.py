"""ECR emulator: a moto server (all services, so STS and IAM work too) with ECR corrected where moto differs.

    python -m ecr_tag_localenv.ecr_emulator --host 127.0.0.1 --port 0 --port-file /tmp/port

See :mod:`.ecr_corrections` for what is corrected, :mod:`.ecr_faults` for the ``/_emulator/`` control
API and :mod:`.ecr_control` for its client, :mod:`.oci_registry` for the OCI distribution API on ``/v2/``.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from wsgiref.types import WSGIApplication

from ecr_tag_localenv.ecr_faults import (
    CallLedger,
    EmulatorMiddleware,
    FaultConfig,
    FaultInjector,
    known_ecr_operations,
)

log = logging.getLogger(__name__)

LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def build_app(ecr_quotas: bool = False, auth_token_ttl: float | None = None) -> EmulatorMiddleware:
    """moto's dispatcher with the ECR corrections installed, behind the control/fault middleware, with the
    OCI distribution face (:mod:`.oci_registry`) on ``/v2/`` over the same state.

    Imports moto, so any environment moto reads at import time must be set before calling this.
    """
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    from ecr_tag_localenv import ecr_auth, ecr_corrections, oci_registry

    ecr_corrections.apply()
    oci_registry.apply()
    if auth_token_ttl is not None:
        ecr_auth.set_token_ttl(auth_token_ttl)
    moto_app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
    ecr_lock = threading.Lock()
    return EmulatorMiddleware(
        moto_app,
        FaultInjector(FaultConfig.startup_defaults(ecr_quotas), known_ecr_operations()),
        CallLedger(),
        ecr_lock,
        on_moto_reset=ecr_corrections.clear_state,
        registry=oci_registry.OciRegistry(ecr_lock),
    )


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="ecr_emulator", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1", help="loopback address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=5000, help="port; 0 picks a free one (see --port-file)")
    parser.add_argument("--port-file", type=Path, help="write the bound port here once listening")
    parser.add_argument(
        "--ecr-quotas",
        action="store_true",
        help="enforce ECR's PutImage rate quota (10/s, burst 10) by default",
    )
    parser.add_argument(
        "--iam-enforce",
        type=int,
        metavar="N",
        help="enforce IAM policies after the first N requests (moto's INITIAL_NO_AUTH_ACTION_COUNT)",
    )
    parser.add_argument(
        "--auth-token-ttl",
        type=float,
        metavar="SECONDS",
        help="lifetime of GetAuthorizationToken's tokens (default 43200, ECR's 12 hours; 0: expired at once)",
    )
    parser.add_argument("--log-requests", action="store_true", help="log every request to stderr")
    args = parser.parse_args(argv)
    if args.host not in LOOPBACK_HOSTS:
        parser.error(f"--host must be a loopback address ({', '.join(sorted(LOOPBACK_HOSTS))}), got {args.host!r}")
    if args.iam_enforce is not None and args.iam_enforce < 0:
        parser.error("--iam-enforce must be >= 0")
    return args


def _stop(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(0)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    logging.getLogger("werkzeug").setLevel(logging.INFO if args.log_requests else logging.WARNING)
    if args.iam_enforce is not None:
        # moto.settings reads this once, at import: set it before build_app imports moto.
        os.environ["INITIAL_NO_AUTH_ACTION_COUNT"] = str(args.iam_enforce)
    app = build_app(ecr_quotas=args.ecr_quotas, auth_token_ttl=args.auth_token_ttl)

    from moto.moto_server.werkzeug_app import MotoRequestHandler
    from werkzeug.serving import make_server

    server = make_server(args.host, args.port, app, threaded=True, request_handler=MotoRequestHandler)
    port = server.server_port
    # moto sends some requests to itself (e.g. between services) at MOTO_PORT.
    os.environ["MOTO_PORT"] = str(port)
    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    if args.port_file is not None:
        tmp = args.port_file.with_name(args.port_file.name + ".tmp")
        tmp.write_text(f"{port}\n")
        tmp.replace(args.port_file)  # atomic: a reader never sees a half-written port
    log.info(
        "ECR emulator listening on http://%s:%d (ecr quotas %s, iam enforce %s)",
        args.host,
        port,
        "on" if args.ecr_quotas else "off",
        args.iam_enforce if args.iam_enforce is not None else "off",
    )
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
