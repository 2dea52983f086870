"""The drift scheduler's own API access, against a real kube-apiserver: it reads an object, and its
status patch is refused when the object changed since that read (no write over a newer status)."""

from __future__ import annotations

import asyncio
import json
import logging

import kopf
import pytest

from ecr_tag_localenv.control_plane import KubeCluster
from ecr_tag_operator.apisession import KubeObjects

from .helpers import eit, get, unique

PATH = "/apis/ecrtag.dev/v1alpha1/namespaces/{namespace}/ecrimagetags/{name}"


def test_reads_and_patches_status_only_at_the_version_it_read(
    control_plane: KubeCluster, k8s_namespace: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBECONFIG", str(control_plane.kubeconfig_path))
    info = kopf.login_with_kubeconfig(settings=kopf.OperatorSettings(), logger=logging.getLogger("test"))
    assert info is not None
    name = unique("store")
    control_plane.kubectl(
        "apply", "-f", "-", input=eit(name, k8s_namespace, repositoryName="team/app", source={"tag": "b"}, tags=["t"])
    )

    async def scenario() -> tuple[bool, bool, bool]:
        store = KubeObjects(lambda: info, PATH, limit=2, connect_timeout=5, request_timeout=15)
        try:
            assert await store.get(k8s_namespace, "no-such-object") is None
            body = await store.get(k8s_namespace, name)
            assert body is not None
            version = body["metadata"]["resourceVersion"]
            first = await store.patch_status(k8s_namespace, name, {"lastSyncTime": "2026-01-01T00:00:00Z"}, version)
            # The first write moved the object on: a patch at the old version is refused.
            stale = await store.patch_status(k8s_namespace, name, {"lastSyncTime": "2000-01-01T00:00:00Z"}, version)
            gone = await store.patch_status("no-such-namespace", name, {"lastSyncTime": "x"}, version)
            return first, stale, gone
        finally:
            await store.close()

    first, stale, gone = asyncio.run(scenario())
    assert (first, stale, gone) == (True, False, False)
    obj = get(control_plane, k8s_namespace, name)
    assert obj is not None
    assert obj["status"]["lastSyncTime"] == "2026-01-01T00:00:00Z", json.dumps(obj["status"])
    assert obj["spec"]["tags"] == ["t"]  # status only: the spec is never written
