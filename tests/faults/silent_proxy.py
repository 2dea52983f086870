"""A TCP proxy on 127.0.0.1 that hides disconnects: when kube-apiserver closes a connection (it stopped),
the client's side stays open and silent, as when a load balancer fails over or a network drops a flow
without a reset reaching the client. New connections reach the (restarted) upstream as usual.
"""

from __future__ import annotations

import contextlib
import json
import socket
import threading
from pathlib import Path
from types import TracebackType
from typing import Any


class SilentDropProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream = ("127.0.0.1", upstream_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._closed = False
        self.silenced = 0  # connections whose upstream ended while the client was left hanging
        threading.Thread(target=self._accept, name="silent-proxy-accept", daemon=True).start()

    def kubeconfig(self, admin_kubeconfig: Path, path: Path) -> Path:
        """A copy of ``admin_kubeconfig`` (JSON, as ControlPlane writes it) whose server is this proxy."""
        config: dict[str, Any] = json.loads(admin_kubeconfig.read_text())
        for cluster in config["clusters"]:
            cluster["cluster"]["server"] = f"https://127.0.0.1:{self.port}"
        path.write_text(json.dumps(config))
        return path

    def _track(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.add(sock)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # closed
            self._track(client)
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self.upstream, timeout=2)
        except OSError:
            client.close()  # nothing listens: the client sees the failure at once, as with a refused connect
            return
        upstream.settimeout(None)
        self._track(upstream)
        dead = threading.Event()
        threading.Thread(target=self._down, args=(upstream, client, dead), daemon=True).start()
        # Client -> upstream; once the upstream is gone, whatever the client sends is swallowed.
        while True:
            try:
                data = client.recv(65536)
            except OSError:
                break
            if not data:
                break
            if dead.is_set():
                continue
            try:
                upstream.sendall(data)
            except OSError:
                dead.set()
        for s in (client, upstream):
            with contextlib.suppress(OSError):
                s.close()

    def _down(self, upstream: socket.socket, client: socket.socket, dead: threading.Event) -> None:
        while True:
            try:
                data = upstream.recv(65536)
            except OSError:
                data = b""
            if not data:
                break
            try:
                client.sendall(data)
            except OSError:
                return
        # The upstream ended: leave the client's connection open, and say nothing.
        if not dead.is_set():
            dead.set()
            with self._lock:
                self.silenced += 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            sockets = [self._listener, *self._sockets]
            self._sockets.clear()
        for s in sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            with contextlib.suppress(OSError):
                s.close()

    def __enter__(self) -> SilentDropProxy:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
