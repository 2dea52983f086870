"""The ``ecr-tag-operator`` command."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import kopf

from .kopf_startup import notify_readiness_on_change
from .runtime import Runtime
from .settings import Settings

LOG_FORMATS = {"plain": kopf.LogFormat.PLAIN, "full": kopf.LogFormat.FULL, "json": kopf.LogFormat.JSON}


def _run(args: argparse.Namespace) -> int:
    from . import handlers  # noqa: F401 - importing registers the handlers with kopf

    overrides = {"metrics_port": args.metrics_port} if args.metrics_port is not None else {}
    settings = Settings(**overrides)
    kopf.configure(verbose=args.verbose, debug=args.debug, log_format=LOG_FORMATS[args.log_format], log_prefix=True)
    notify_readiness_on_change()  # before kopf makes its first readiness toggle
    kopf.run(
        standalone=True,  # one replica (strategy Recreate): no peering objects to keep or RBAC for them
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        memo=kopf.Memo(runtime=Runtime.build(settings)),
    )
    return 0


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="ecr-tag-operator", description=__doc__)
    sub = top.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the operator against the cluster of the current kubeconfig")
    run.add_argument(
        "-n", "--namespace", action="append", default=[], help="watch this namespace (repeatable); default: all"
    )
    run.add_argument("--log-format", choices=sorted(LOG_FORMATS), default="plain", help="log line format")
    run.add_argument("--liveness", metavar="URL", help="kopf's liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    run.add_argument("--metrics-port", type=int, help="Prometheus metrics port (0: off; default 9090)")
    run.add_argument("-v", "--verbose", action="store_true", help="more logs")
    run.add_argument("--debug", action="store_true", help="debug logs, kopf's included")
    run.set_defaults(func=_run)
    return top


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code = args.func(args)
    return int(code)


if __name__ == "__main__":
    sys.exit(main())
