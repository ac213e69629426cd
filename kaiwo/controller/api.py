"""The Kubernetes calls the controller makes, through the official ``kubernetes`` client.

Everything goes through the typed API classes of the official client, with two deliberate choices:

* **Raw JSON in and out** (``_preload_content=False``). The controller's cache and the scheduling
  core work on plain dicts (as ``kubectl get -o json`` prints them); deserialising every Pod into
  the client's pydantic models and back would cost more than the scheduling cycle. It also side-
  steps a known defect: ``create_namespaced_pod_binding`` (and ``create_namespaced_binding``)
  declare a ``V1Binding`` response, but kube-apiserver answers a binding with a ``Status`` object,
  so the client's deserialiser fails on the missing required ``target`` field *after* the pod was
  bound. With the raw response the HTTP status (201) is all that is checked.
* **Explicit patch content types**. For a dict body the client sends
  ``application/strategic-merge-patch+json``, which custom resources refuse (415) and which merges
  lists by key. Custom-resource status uses ``application/merge-patch+json``; pod conditions (a
  list keyed by ``type``) use strategic merge so the kubelet's other conditions survive.

Non-2xx answers raise the client's ``ApiException`` (with ``status``), which
:mod:`kaiwo.controller.errors` classifies.
"""
from __future__ import annotations

import json
from typing import Iterator

from kubernetes import client, watch

GROUP = "kaiwo.ai"
VERSION = "v1alpha2"
PLURALS = {"KaiwoQueue": "kaiwoqueues", "KaiwoJob": "kaiwojobs", "KaiwoReservation": "kaiworeservations"}
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_PATCH = "application/strategic-merge-patch+json"

#: The kinds the controller lists and watches, and whether they are namespaced.
WATCHED_KINDS = {"Node": False, "Pod": True, "PriorityClass": False, "KaiwoQueue": False,
                 "KaiwoJob": True, "KaiwoReservation": False}


def quantities_as_strings(pod_spec: dict) -> dict:
    """A copy of a pod spec whose resource quantities are strings.

    Manifests may write ``cpu: 4``; the API server accepts that, but the official client validates
    request bodies against its models, where quantities are strings, and would refuse the pod before
    sending it. Converting is lossless (``4`` and ``"4"`` are the same quantity).
    """
    spec = dict(pod_spec)

    def fix(mapping):
        return {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                for k, v in (mapping or {}).items()}

    for section in ("containers", "initContainers", "ephemeralContainers"):
        if spec.get(section):
            out = []
            for c in spec[section]:
                c = dict(c)
                if c.get("resources"):
                    res = dict(c["resources"])
                    for key in ("requests", "limits"):
                        if res.get(key):
                            res[key] = fix(res[key])
                    c["resources"] = res
                out.append(c)
            spec[section] = out
    if spec.get("overhead"):
        spec["overhead"] = fix(spec["overhead"])
    return spec


def read_json(resp) -> dict:
    """Body of a raw (``_preload_content=False``) response as a dict; releases the connection."""
    try:
        data = resp.data
    finally:
        resp.release_conn()
    return json.loads(data) if data else {}


class _RawWatch(watch.Watch):
    """The client's watch without model deserialisation: events carry the object as a dict.

    ``Watch.stream`` still parses the lines, handles ``ERROR`` events (raising ``ApiException``
    with the event's code, e.g. 410 Gone, because a server timeout is always given) and closes the
    response; returning no type skips the per-event pydantic work.
    """

    def get_return_type(self, func):
        return None


class KubeApi:
    """The API calls of the controller, on one ``ApiClient``.

    Parameters
    ----------
    api_client : kubernetes.client.ApiClient
        Configured client (kubeconfig or in-cluster). Its connection pool should allow as many
        connections as binder workers plus watches (see :func:`kaiwo.controller.loop.make_api_client`).
    request_timeout : float
        Seconds for one ordinary request (connect and read), so a hung API server surfaces as a
        timeout the retry policy handles instead of a stuck worker.
    """

    def __init__(self, api_client: client.ApiClient, request_timeout: float = 30.0):
        self.api_client = api_client
        self.core = client.CoreV1Api(api_client)
        self.custom = client.CustomObjectsApi(api_client)
        self.scheduling = client.SchedulingV1Api(api_client)
        self.coordination = client.CoordinationV1Api(api_client)
        self.timeout = request_timeout
        self._watches: set = set()

    # ------------------------------------------------------------------------ list / watch
    def _list_call(self, kind: str, namespace: str | None):
        if kind == "Pod":
            return (self.core.list_namespaced_pod, (namespace,)) if namespace else \
                (self.core.list_pod_for_all_namespaces, ())
        if kind == "Node":
            return self.core.list_node, ()
        if kind == "PriorityClass":
            return self.scheduling.list_priority_class, ()
        if kind in PLURALS:
            if namespace:
                return self.custom.list_namespaced_custom_object, (GROUP, VERSION, namespace, PLURALS[kind])
            return self.custom.list_cluster_custom_object, (GROUP, VERSION, PLURALS[kind])
        raise ValueError(f"kind {kind!r} is not watched (expected one of {', '.join(WATCHED_KINDS)})")

    def list(self, kind: str, namespace: str | None = None, page_size: int = 500) -> tuple[list[dict], str]:
        """Every object of ``kind`` (in ``namespace``, or all), paged; returns (items, the list's
        resourceVersion to watch from)."""
        fn, args = self._list_call(kind, namespace)
        return self._paged(fn, args, page_size)

    def _paged(self, fn, args: tuple, page_size: int, **extra) -> tuple[list[dict], str]:
        items: list[dict] = []
        token = None
        while True:
            kwargs = {"limit": page_size, "_preload_content": False, "_request_timeout": self.timeout, **extra}
            if token:
                kwargs["_continue"] = token
            doc = read_json(fn(*args, **kwargs))
            items.extend(doc.get("items") or [])
            meta = doc.get("metadata") or {}
            token = meta.get("continue")
            if not token:
                return items, str(meta.get("resourceVersion") or "")

    def watch(self, kind: str, namespace: str | None, resource_version: str | None,
              timeout_seconds: int, read_timeout: float | None = None) -> Iterator[dict]:
        """Events (``{"type", "object"}``, object as a dict) after ``resource_version``, with
        ``BOOKMARK`` events (kube-apiserver sends one about every minute and one just before the
        stream's end).

        The server ends the stream after ``timeout_seconds``; the client's read timeout
        (``read_timeout``, default ``timeout_seconds`` + 10: the longest a live stream stays
        silent) ends a silently dead one with urllib3's ``ReadTimeoutError``. A 410 Gone (version
        compacted away) raises ``ApiException`` with status 410.
        """
        fn, args = self._list_call(kind, namespace)
        w = _RawWatch()
        self._watches.add(w)
        read = timeout_seconds + 10.0 if read_timeout is None else read_timeout
        kwargs = {"timeout_seconds": int(timeout_seconds), "allow_watch_bookmarks": True,
                  "_request_timeout": (self.timeout, read)}
        if resource_version:
            kwargs["resource_version"] = resource_version
        try:
            for event in w.stream(fn, *args, **kwargs):
                yield {"type": event.get("type"), "object": event.get("raw_object") or event.get("object")}
        finally:
            self._watches.discard(w)

    def stop_watches(self) -> None:
        """Unblock every open watch (used when the controller stops)."""
        for w in list(self._watches):
            w.stop()

    # ---------------------------------------------------------------------------- pods
    def get_pod(self, namespace: str, name: str) -> dict:
        return read_json(self.core.read_namespaced_pod(name, namespace, _preload_content=False,
                                                       _request_timeout=self.timeout))

    def create_pod(self, namespace: str, body: dict) -> dict:
        return read_json(self.core.create_namespaced_pod(namespace, body, _preload_content=False,
                                                         _request_timeout=self.timeout))

    def patch_pod_status(self, namespace: str, name: str, patch: dict) -> dict:
        """Strategic merge patch of ``pods/NAME/status`` (conditions merge by type)."""
        return read_json(self.core.patch_namespaced_pod_status(
            name, namespace, patch, _content_type=STRATEGIC_PATCH, _preload_content=False,
            _request_timeout=self.timeout))

    def bind(self, namespace: str, name: str, uid: str, node: str, annotations: dict | None = None) -> int:
        """POST ``pods/NAME/binding``. Returns the HTTP status.

        The pod's uid is a precondition (a pod deleted and re-created under the same name is not
        bound by mistake), and ``annotations`` are merged into the pod's by kube-apiserver in the
        same atomic update that sets ``spec.nodeName`` (``BindingREST.setPodHostAndAnnotations``):
        a pod is never bound without them, nor annotated without being bound.
        """
        body = {"apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": namespace, "uid": uid or None,
                             "annotations": annotations or None},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node}}
        resp = self.core.create_namespaced_pod_binding(name, namespace, body, _preload_content=False,
                                                       _request_timeout=self.timeout)
        status = resp.status
        read_json(resp)
        return status

    def evict(self, namespace: str, name: str, uid: str) -> int:
        """POST ``pods/NAME/eviction`` (honours PodDisruptionBudgets: 429 when one forbids it)."""
        body = {"apiVersion": "policy/v1", "kind": "Eviction",
                "metadata": {"name": name, "namespace": namespace},
                "deleteOptions": {"preconditions": {"uid": uid}} if uid else None}
        resp = self.core.create_namespaced_pod_eviction(name, namespace, body, _preload_content=False,
                                                        _request_timeout=self.timeout)
        status = resp.status
        read_json(resp)
        return status

    # ------------------------------------------------------------------ configmaps, events
    def create_config_map(self, namespace: str, body: dict) -> dict:
        return read_json(self.core.create_namespaced_config_map(namespace, body, _preload_content=False,
                                                                _request_timeout=self.timeout))

    def replace_config_map(self, namespace: str, name: str, body: dict) -> dict:
        """PUT; with ``metadata.resourceVersion`` in ``body`` the server refuses (409) if the
        ConfigMap changed since that version was read."""
        return read_json(self.core.replace_namespaced_config_map(name, namespace, body, _preload_content=False,
                                                                 _request_timeout=self.timeout))

    def get_config_map(self, namespace: str, name: str) -> dict:
        return read_json(self.core.read_namespaced_config_map(name, namespace, _preload_content=False,
                                                              _request_timeout=self.timeout))

    def delete_config_map(self, namespace: str, name: str, resource_version: str) -> dict:
        """DELETE with a resourceVersion precondition (409 if it changed since it was read)."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions",
                "preconditions": {"resourceVersion": resource_version}}
        return read_json(self.core.delete_namespaced_config_map(name, namespace, body=body, _preload_content=False,
                                                                _request_timeout=self.timeout))

    def list_config_maps(self, namespace: str | None, label_selector: str, page_size: int = 500) -> list[dict]:
        """ConfigMaps with ``label_selector`` (in ``namespace``, or all), paged."""
        fn, args = (self.core.list_namespaced_config_map, (namespace,)) if namespace else \
            (self.core.list_config_map_for_all_namespaces, ())
        return self._paged(fn, args, page_size, label_selector=label_selector)[0]

    def create_event(self, namespace: str, body: dict) -> dict:
        return read_json(self.core.create_namespaced_event(namespace, body, _preload_content=False,
                                                           _request_timeout=self.timeout))

    # ----------------------------------------------------------------- custom resources
    def patch_queue_status(self, name: str, status: dict) -> dict:
        return read_json(self.custom.patch_cluster_custom_object_status(
            GROUP, VERSION, PLURALS["KaiwoQueue"], name, {"status": status}, _content_type=MERGE_PATCH,
            _preload_content=False, _request_timeout=self.timeout))

    def patch_job_status(self, namespace: str, name: str, status: dict) -> dict:
        return read_json(self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, PLURALS["KaiwoJob"], name, {"status": status},
            _content_type=MERGE_PATCH, _preload_content=False, _request_timeout=self.timeout))

    # -------------------------------------------------------------------------- leases
    def get_lease(self, namespace: str, name: str) -> dict:
        return read_json(self.coordination.read_namespaced_lease(name, namespace, _preload_content=False,
                                                                 _request_timeout=self.timeout))

    def create_lease(self, namespace: str, body: dict) -> dict:
        return read_json(self.coordination.create_namespaced_lease(namespace, body, _preload_content=False,
                                                                   _request_timeout=self.timeout))

    def replace_lease(self, namespace: str, name: str, body: dict) -> dict:
        """PUT with ``metadata.resourceVersion``: the server refuses (409) if anyone wrote the
        lease since we read it -- the compare-and-swap leader election relies on."""
        return read_json(self.coordination.replace_namespaced_lease(name, namespace, body, _preload_content=False,
                                                                    _request_timeout=self.timeout))
