"""A Kubernetes API emulator for the controller tests: kmock's ``KubernetesEmulator``, extended.

No kube-apiserver can be installed here (DESIGN.md, "Real components and how tests reach them"), so
the controller under test talks HTTP on loopback, with the official ``kubernetes`` client, to this
emulator running in its own process. kmock keeps objects as plain JSON and serves list, get,
create, merge-patch, delete and watch; what the controller relies on beyond that is added here:

* **resourceVersion**: one cluster-wide counter, stamped on every write (create, patch, replace,
  delete, binding, eviction) and carried by every watch event; ``metadata.resourceVersion`` and
  ``metadata.uid`` in a PATCH or PUT body are preconditions (409 on mismatch), as in Kubernetes.
* **watch from a resourceVersion**: every event is kept in a per-resource log, so a watch resumes
  exactly after the version it names; a version older than the compaction horizon gets the
  ``ERROR`` event with a 410 ``Status`` (``Expired``), as kube-apiserver sends it; ``timeoutSeconds``
  ends the stream.
* **subresources**: ``pods/NAME/binding`` and ``namespaces/NS/bindings`` set ``spec.nodeName`` and
  merge the Binding's annotations into the pod, atomically, as kube-apiserver does (409 if the pod
  is already bound or its uid differs, 404 if it is gone) and answer ``201`` with a ``Status`` body --
  the answer the official client mis-parses as a ``V1Binding``; ``pods/NAME/eviction`` deletes the
  pod; ``PUT`` replaces an object (optimistic concurrency on ``resourceVersion``).
* **watch bookmarks**: a watch with ``allowWatchBookmarks=true`` gets a ``BOOKMARK`` event (the
  current resourceVersion, every earlier event of the stream sent) every ``bookmarks`` interval;
* **stalled watches**: ``stall`` makes the watches of chosen resources (and clients, by User-Agent)
  stay open and silent -- no event, no bookmark, no end at ``timeoutSeconds`` -- until ``unstall``,
  when they deliver late; lists and writes go on, so a test can bind pods as *another writer*
  while a controller is blind;
* **faults**: rules injected over the control API answer chosen requests with an error status
  (409, 429, 500, 503...) or delay them past the client's timeout, a given number of times or with
  a seeded probability, optionally only for one client (``agent``: searched in the User-Agent).
* **pod spec immutability**: a PATCH that touches a pod's ``spec`` is refused (422), so a
  controller cannot "bind" by patching ``nodeName``; a DELETE honours its ``preconditions``
  (``resourceVersion``, ``uid``).
* lookups by key in O(1), and one reaction that routes every resource request (kmock scans every
  object, and tries each fallback reaction's filter chain, per request: too slow for 1,000 pods).

Known simplifications: a strategic-merge patch is applied as a JSON merge patch (lists are
replaced, not merged by key); label and field selectors are ignored (the controller's only narrow what it reads);
admission, defaulting and most validation are absent.

Control endpoints (test-only, under ``/_emulator/``): ``reset``, ``faults`` (POST rules / DELETE),
``disconnect`` (end every open watch, stalled ones too), ``stall`` (POST a rule / DELETE all),
``bookmarks`` (interval), ``compact`` (later watches from older versions get 410),
``verbs`` (DELETE: restart the record of request verbs), ``load`` (create many objects in one
request, for set-up), ``stats`` (resourceVersion, successful
bindings per pod, evictions, faults fired, verbs seen, watch requests per resource).

Run as ``python -m tests.controller.emulator [--port N]``; it prints ``PORT <n>`` when it listens.
:class:`EmulatorProcess` starts it and wraps the control endpoints for the tests and benchmarks.
"""
from __future__ import annotations

import argparse
import asyncio
import bisect
import collections
import datetime
import json
import os
import random
import re
import string
import subprocess
import sys
import time
import urllib.request
import uuid

#: Resources the controller lists, watches or writes: (key, namespaced, kind, subresources).
RESOURCES = (
    ("v1/pods", True, "Pod", ("binding", "eviction", "status")),
    ("v1/nodes", False, "Node", ("status",)),
    ("v1/configmaps", True, "ConfigMap", ()),
    ("v1/events", True, "Event", ()),
    ("v1/namespaces", False, "Namespace", ()),
    ("scheduling.k8s.io/v1/priorityclasses", False, "PriorityClass", ()),
    ("coordination.k8s.io/v1/leases", True, "Lease", ()),
    ("kaiwo.ai/v1alpha2/kaiwoqueues", False, "KaiwoQueue", ("status",)),
    ("kaiwo.ai/v1alpha2/kaiwojobs", True, "KaiwoJob", ("status",)),
    ("kaiwo.ai/v1alpha2/kaiworeservations", False, "KaiwoReservation", ("status",)),
)


#: API groups with strategic-merge-patch support (built-in types); custom resources answer 415.
BUILTIN_GROUPS = ("", "coordination.k8s.io", "scheduling.k8s.io", "apps", "policy")


def _now() -> str:
    return datetime.datetime.now(tz=datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _status(code: int, reason: str, message: str) -> dict:
    return {"apiVersion": "v1", "kind": "Status", "metadata": {},
            "status": "Success" if code < 400 else "Failure", "code": code, "reason": reason,
            "message": message}


def _user_agent(request) -> str:
    """The request's User-Agent (the controller puts its replica identity there)."""
    for k, v in (request.headers or {}).items():
        if k.lower() == "user-agent":
            return v
    return ""


class Stall:
    """Watches of matching resources (and clients) that stay open but deliver nothing -- no
    event, no bookmark, no end at ``timeoutSeconds`` -- like a connection that died silently or a
    server whose watch fell behind, until the stall ends (everything held back is delivered then,
    late) or the watch is disconnected."""

    def __init__(self, resource: str = ".*", agent: str | None = None, seconds: float | None = None):
        self.resource = re.compile(resource)
        self.agent = re.compile(agent) if agent else None
        self.until = None if seconds is None else time.monotonic() + float(seconds)

    def holds(self, plural: str, agent: str) -> bool:
        if self.until is not None and time.monotonic() >= self.until:
            return False
        return bool(self.resource.fullmatch(plural)) and (self.agent is None or bool(self.agent.search(agent)))


def make_emulator_class():
    """The emulator class (kmock is imported lazily so this module imports without it)."""
    import aiohttp.web
    import kmock
    from kmock._internal import enums

    pods_res = kmock.resource("", "v1", "pods")

    class Fault:
        """One injected fault: which requests, what answer, how often."""

        def __init__(self, method=None, path=".*", status=None, delay=0.0, hold=0.0, times=None,
                     probability=1.0, after=0, seed=0, message="injected fault", agent=None):
            self.method = method.upper() if method else None
            self.path = re.compile(path)
            self.agent = re.compile(agent) if agent else None  # searched in the User-Agent
            self.status = status
            self.delay = float(delay)   # before processing: the request is applied late
            self.hold = float(hold)     # after processing: applied, but the answer comes late
            self.times = times
            self.probability = float(probability)
            self.after = int(after)
            self.rng = random.Random(seed)
            self.message = message
            self.seen = 0
            self.fired = 0

        def fires(self, method: str, path: str, agent: str = "") -> bool:
            if self.method and method != self.method:
                return False
            if not self.path.search(path):
                return False
            if self.agent and not self.agent.search(agent):
                return False
            self.seen += 1
            if self.seen <= self.after:
                return False
            if self.times is not None and self.fired >= self.times:
                return False
            if self.probability < 1.0 and self.rng.random() >= self.probability:
                return False
            self.fired += 1
            return True

    class EventLog:
        """Replaces kmock's per-resource bus: keeps every event with its resourceVersion so a watch
        resumes exactly after the version it names, and wakes the open watches."""

        def __init__(self):
            self.rvs: list[int] = []
            self.events: list[dict] = []
            self.changed = asyncio.Event()

        async def put(self, *items):
            for ev in items:
                rv = int((ev["object"].get("metadata") or {}).get("resourceVersion") or 0)
                self.rvs.append(rv)
                self.events.append(ev)
            self.changed.set()
            self.changed = asyncio.Event()

    class KaiwoEmulator(kmock.KubernetesEmulator):
        """kmock's emulator with resourceVersions, resumable watches, 410, binding, eviction,
        replace, preconditions and fault injection (see the module docstring)."""

        def __attrs_post_init__(self) -> None:
            super().__attrs_post_init__()
            self._buses = collections.defaultdict(EventLog)
            self.rv = 0
            self.horizon = 0
            self.mutation_lock = asyncio.Lock()
            self.faults: list[Fault] = []
            self.faults_fired = 0
            self.disconnect = asyncio.Event()
            self.binds: collections.Counter = collections.Counter()
            self.refused_binds: collections.Counter = collections.Counter()  #: gated pods
            self.bind_nodes: dict[str, str] = {}
            self.evictions: collections.Counter = collections.Counter()
            self.requests_served = 0
            self.verbs: set = set()
            self.open_watches: collections.Counter = collections.Counter()
            self.watch_requests: collections.Counter = collections.Counter()
            self.stalls: list[Stall] = []
            self.stall_changed = asyncio.Event()
            #: Seconds between BOOKMARK events on watches that allow them (kube-apiserver sends one
            #: about every minute and one just before timeoutSeconds; tests want them sooner).
            self.bookmark_interval = 1.0
            # One reaction, matched first, serves every resource request: kmock would otherwise try
            # its dozen fallback reactions in turn, each a chain of filters, for every request.
            self[lambda request: request.resource is not None and bool(request.resource.plural)] \
                << self._route
            for key, namespaced, kind, subresources in RESOURCES:
                self.resources[key] = kmock.ResourceInfo(
                    namespaced=namespaced, kind=kind, singular=kind.lower(),
                    verbs={"get", "list", "watch", "create", "update", "patch", "delete"},
                    subresources=set(subresources))

        # ------------------------------------------------------------------------- helpers
        def next_rv(self) -> str:
            self.rv += 1
            return str(self.rv)

        def lookup(self, resource, namespace, name):
            obj = self._objects._objects.get((resource, namespace, name))
            return None if obj is None or obj.deleted else obj

        @staticmethod
        def error(code: int, reason: str, message: str):
            return kmock.KubernetesError(status=code, reason=reason, message=message,
                                         details={"code": code})

        # ------------------------------------------------------------------------ dispatch
        async def _handle(self, request):
            # kmock records every request and matches each new one by scanning that record (its
            # views have no ``__contains__``): quadratic in the requests served. Keep only the
            # requests in flight there, which is all its matching needs.
            self.requests_served += 1
            try:
                return await self._dispatch(request)
            finally:
                try:
                    self._requests.remove(request)
                except ValueError:
                    pass

        async def _dispatch(self, request):
            path = request.url.path
            if path.startswith("/_emulator/"):
                return await self._control(request, path[len("/_emulator/"):])
            method = str(request.method.value if hasattr(request.method, "value") else request.method)
            if request.resource is not None:
                self.verbs.add(self._verb(request, method))
            target = request.url.path_qs  # faults may match the query too (e.g. watch=true)
            agent = _user_agent(request)
            for fault in self.faults:
                if fault.fires(method, target, agent):
                    self.faults_fired += 1
                    if fault.delay:
                        await asyncio.sleep(fault.delay)
                    if fault.status:
                        raise self.error(fault.status, "InjectedFault", fault.message)
                    if fault.hold:
                        response = await self._serve(request, method)
                        await asyncio.sleep(fault.hold)
                        return response
                    break
            return await self._serve(request, method)

        async def _serve(self, request, method: str):
            if request.resource is None or request.action == enums.action.WATCH:
                return await super()._handle(request)
            if method == "POST" and (request.subresource == "binding" or
                                     (request.resource.plural == "bindings" and request.name is None)):
                return await self._bind(request)
            if method == "POST" and request.subresource == "eviction":
                return await self._evict(request)
            if method == "PUT" and request.name is not None:
                return await self._replace(request)
            if request.action in (enums.action.CREATE, enums.action.UPDATE, enums.action.DELETE):
                async with self.mutation_lock:
                    self._prepare_write(request)
                    return await super()._handle(request)
            return await super()._handle(request)

        @staticmethod
        def _verb(request, method: str) -> tuple:
            """(RBAC verb, API group, resource[/subresource]) of a request, for RBAC checks."""
            if method == "GET":
                verb = "watch" if request.params.get("watch") in ("true", "1") else \
                    ("get" if request.name else "list")
            else:
                verb = {"POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}.get(method, method)
            res = request.resource.plural + (f"/{request.subresource}" if request.subresource else "")
            return verb, request.resource.group, res

        def _prepare_write(self, request) -> None:
            """Stamp resourceVersion (and uid, creationTimestamp on create); check preconditions.
            Runs under the mutation lock so versions are published in increasing order."""
            data = request.data
            if request.action == enums.action.CREATE:
                if not isinstance(data, dict):
                    raise self.error(400, "BadRequest", "the body of a create must be an object")
                md = data.setdefault("metadata", {})
                if not md.get("name"):
                    if not md.get("generateName"):
                        raise self.error(422, "Invalid", "metadata.name or metadata.generateName is required")
                    md["name"] = md["generateName"] + "".join(random.choices(string.ascii_lowercase, k=5))
                ns = request.namespace or md.get("namespace")
                if ns:
                    md["namespace"] = ns
                md.setdefault("uid", str(uuid.uuid4()))
                md.setdefault("creationTimestamp", _now())
                md["resourceVersion"] = self.next_rv()
                return
            obj = self.lookup(request.resource, request.namespace, request.name)
            if obj is None:
                return  # kmock answers 404
            if request.action == enums.action.DELETE:
                pre = (data.get("preconditions") if isinstance(data, dict) else None) or {}
                current = obj.last.raw.get("metadata") or {}
                for k in ("resourceVersion", "uid"):
                    if pre.get(k) and pre[k] != current.get(k):
                        raise self.error(409, "Conflict", f"Precondition failed: {k} in precondition: "
                                         f"{pre[k]}, {k} in object meta: {current.get(k)}")
                obj.patch({"metadata": {"resourceVersion": self.next_rv()}})
                return
            ctype = request.headers.get("Content-Type", "")
            if "json-patch" in ctype or not isinstance(data, dict):
                # kube-apiserver reads a JSON patch as a list of operations; an object is an error.
                raise self.error(400, "BadRequest",
                                 f"{ctype or 'no content type'}: body must be a list of JSON-patch "
                                 "operations; send application/merge-patch+json for an object")
            if "strategic-merge-patch" in ctype and request.resource.group not in BUILTIN_GROUPS:
                # Custom resources have no strategic-merge schema.
                raise self.error(415, "UnsupportedMediaType", f"the body of the request was in an "
                                 f"unknown format - accepted media types include: "
                                 "application/json-patch+json, application/merge-patch+json, "
                                 "application/apply-patch+yaml")
            md = data.get("metadata") or {}
            current = obj.last.raw.get("metadata") or {}
            if md.get("resourceVersion") and md["resourceVersion"] != current.get("resourceVersion"):
                raise self.error(409, "Conflict", "the object has been modified; please apply your "
                                 "changes to the latest version and try again")
            if md.get("uid") and md["uid"] != current.get("uid"):
                raise self.error(409, "Conflict", f"Precondition failed: UID in precondition: "
                                 f"{md['uid']}, UID in object meta: {current.get('uid')}")
            if request.resource == pods_res and request.subresource is None and "spec" in data:
                raise self.error(422, "Invalid", "Pod is invalid: spec: Forbidden: pod updates may "
                                 "not change fields other than image, activeDeadlineSeconds, "
                                 "tolerations (bind through pods/NAME/binding)")
            data.setdefault("metadata", {})["resourceVersion"] = self.next_rv()

        # --------------------------------------------------------------------- subresources
        async def _bind(self, request):
            body = request.data if isinstance(request.data, dict) else {}
            ns = request.namespace
            name = request.name if request.subresource == "binding" else \
                (body.get("metadata") or {}).get("name")
            node = (body.get("target") or {}).get("name")
            if not node:
                raise self.error(422, "Invalid", "Binding is invalid: target.name: Required value")
            async with self.mutation_lock, self._lock:
                obj = self.lookup(pods_res, ns, name)
                if obj is None:
                    raise self.error(404, "NotFound", f'pods "{name}" not found')
                uid = (body.get("metadata") or {}).get("uid")
                current = obj.last.raw
                if uid and uid != (current.get("metadata") or {}).get("uid"):
                    raise self.error(409, "Conflict", f"Operation cannot be fulfilled on pods/binding "
                                     f'"{name}": UID in precondition does not match')
                if (current.get("spec") or {}).get("schedulingGates"):
                    # kube-apiserver refuses to bind a pod whose scheduling gates are not all removed.
                    self.refused_binds[f"{ns}/{name}"] += 1
                    raise self.error(409, "Conflict", f'pod {name} has non-empty .spec.schedulingGates')
                bound = (current.get("spec") or {}).get("nodeName")
                if bound:
                    raise self.error(409, "Conflict", f'Operation cannot be fulfilled on pods/binding '
                                     f'"{name}": pod {name} is already assigned to node "{bound}"')
                conditions = [c for c in (current.get("status") or {}).get("conditions") or []
                              if c.get("type") != "PodScheduled"]
                conditions.append({"type": "PodScheduled", "status": "True",
                                   "lastTransitionTime": _now()})
                # Like kube-apiserver (BindingREST.setPodHostAndAnnotations): the Binding's
                # annotations are merged into the pod in the same update that sets the node.
                annotations = (body.get("metadata") or {}).get("annotations") or {}
                obj.patch({"metadata": {"resourceVersion": self.next_rv(), "annotations": dict(annotations)},
                           "spec": {"nodeName": node}, "status": {"conditions": conditions}})
                self.binds[f"{ns}/{name}"] += 1
                self.bind_nodes[f"{ns}/{name}"] = node
                await self._buses[pods_res].put({"type": "MODIFIED", "object": obj.last.raw})
            return aiohttp.web.json_response(_status(201, "", ""), status=201)

        async def _evict(self, request):
            body = request.data if isinstance(request.data, dict) else {}
            async with self.mutation_lock, self._lock:
                obj = self.lookup(pods_res, request.namespace, request.name)
                if obj is None:
                    raise self.error(404, "NotFound", f'pods "{request.name}" not found')
                uid = ((body.get("deleteOptions") or {}).get("preconditions") or {}).get("uid")
                if uid and uid != (obj.last.raw.get("metadata") or {}).get("uid"):
                    raise self.error(409, "Conflict", "Precondition failed: UID in precondition does "
                                     "not match")
                obj.patch({"metadata": {"resourceVersion": self.next_rv()}})
                raw = obj.last.raw
                obj.delete()
                self.evictions[f"{request.namespace}/{request.name}"] += 1
                await self._buses[pods_res].put({"type": "DELETED", "object": raw})
            return aiohttp.web.json_response(_status(201, "", ""), status=201)

        async def _replace(self, request):
            body = request.data
            if not isinstance(body, dict):
                raise self.error(400, "BadRequest", "the body of a replace must be an object")
            async with self.mutation_lock, self._lock:
                obj = self.lookup(request.resource, request.namespace, request.name)
                if obj is None:
                    raise self.error(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
                current = obj.last.raw.get("metadata") or {}
                md = dict(body.get("metadata") or {})
                if md.get("resourceVersion") and md["resourceVersion"] != current.get("resourceVersion"):
                    raise self.error(409, "Conflict", f'Operation cannot be fulfilled on '
                                     f'{request.resource.plural} "{request.name}": the object has been '
                                     'modified; please apply your changes to the latest version and try again')
                for k in ("uid", "creationTimestamp", "name", "namespace"):
                    if k in current:
                        md[k] = current[k]
                md["resourceVersion"] = self.next_rv()
                new = dict(body, metadata=md)
                obj.create(new)
                await self._buses[request.resource].put({"type": "MODIFIED", "object": obj.last.raw})
            return aiohttp.web.json_response(new)

        async def _route(self, request):
            action = request.action
            if action == enums.action.WATCH:
                return self._serve_watch(request)
            serve = {enums.action.LIST: self._serve_list, enums.action.FETCH: self._serve_fetch,
                     enums.action.CREATE: self._serve_create, enums.action.UPDATE: self._serve_update,
                     enums.action.DELETE: self._serve_delete}.get(action)
            if serve is None:
                raise self.error(405, "MethodNotAllowed", f"{request.method} {request.url.path}")
            return await serve(request)

        # -------------------------------------------------------------- reads in O(1) / RVs
        async def _serve_fetch(self, request):
            async with self._lock:
                obj = self.lookup(request.resource, request.namespace, request.name)
                if obj is None:
                    raise self.error(404, "NotFound", f'{request.resource.plural} "{request.name}" not found')
                return obj.raw

        async def _serve_create(self, request):
            md = (request.data or {}).get("metadata") or {}
            async with self._lock:
                obj = self.lookup(request.resource, request.namespace or md.get("namespace"), md.get("name"))
                return obj.raw

        async def _serve_update(self, request):
            async with self._lock:
                obj = self._objects._objects.get((request.resource, request.namespace, request.name))
                return obj.last.raw

        async def _serve_delete(self, request):
            async with self._lock:
                obj = self._objects._objects.get((request.resource, request.namespace, request.name))
                return obj.last.raw

        async def _serve_list(self, request):
            known = {r for r in self._resources} | {k[0] for k in self._objects._objects}
            if request.resource not in known:
                raise self.error(404, "NotFound", "the server could not find the requested resource")
            async with self._lock:
                items = [obj.raw for (res, ns, _), obj in self._objects._objects.items()
                         if res == request.resource and not obj.deleted
                         and (request.namespace is None or ns == request.namespace)]
                rv = str(self.rv)
            # Pagination: ``continue`` is the offset (a real server keeps a consistent snapshot).
            limit = int(request.params.get("limit") or 0)
            start = int(request.params.get("continue") or 0)
            meta = {"resourceVersion": rv}
            if limit:
                if start + limit < len(items):
                    meta["continue"] = str(start + limit)
                items = items[start:start + limit]
            return {"apiVersion": "v1", "kind": "List", "metadata": meta, "items": items}

        async def _serve_watch(self, request):
            self.open_watches[request.resource.plural] += 1
            self.watch_requests[request.resource.plural] += 1
            try:
                async for item in self._watch_events(request):
                    yield item
            finally:
                self.open_watches[request.resource.plural] -= 1

        def _stalled(self, request, agent: str) -> bool:
            return any(s.holds(request.resource.plural, agent) for s in self.stalls)

        async def _watch_events(self, request):
            yield b""  # send the headers now
            log = self._buses[request.resource]
            disconnect = self.disconnect
            agent = _user_agent(request)
            raw_rv = request.params.get("resourceVersion")
            timeout = float(request.params.get("timeoutSeconds") or 0) or None
            deadline = None if timeout is None else time.monotonic() + timeout
            bookmarks = request.params.get("allowWatchBookmarks") in ("true", "1")
            kind = next((k for key, _, k, _ in RESOURCES if key.endswith("/" + request.resource.plural)), "")
            if raw_rv not in (None, "", "0"):
                since = int(raw_rv)
                if since < self.horizon:
                    yield {"type": "ERROR", "object": _status(
                        410, "Expired", f"too old resource version: {since} ({self.horizon})")}
                    return
                pos = bisect.bisect_right(log.rvs, since)
                initial = []
            else:  # no version: the current objects as ADDED, then what follows
                async with self._lock:
                    initial = [{"type": "ADDED", "object": obj.raw}
                               for (res, ns, _), obj in self._objects._objects.items()
                               if res == request.resource and not obj.deleted
                               and (request.namespace is None or ns == request.namespace)]
                    pos = len(log.events)
            next_bookmark = time.monotonic() + self.bookmark_interval
            while True:
                if self._stalled(request, agent):
                    # Hold everything back (the timeout too); only a disconnect or the end of the
                    # stall lets the stream move again.
                    if disconnect.is_set():
                        return
                    changed = asyncio.ensure_future(self.stall_changed.wait())
                    gone = asyncio.ensure_future(disconnect.wait())
                    _, pending = await asyncio.wait({changed, gone}, timeout=0.2,
                                                    return_when=asyncio.FIRST_COMPLETED)
                    for t in pending:
                        t.cancel()
                    continue
                for ev in initial:
                    yield ev
                initial = []
                bookmark = None
                if bookmarks and self.bookmark_interval > 0 and time.monotonic() >= next_bookmark:
                    # Like kube-apiserver's: "every event up to this version was sent". Read under
                    # the mutation lock, when every write up to self.rv is in the logs.
                    async with self.mutation_lock:
                        bookmark, upto = self.rv, len(log.events)
                    next_bookmark = time.monotonic() + self.bookmark_interval
                else:
                    upto = len(log.events)
                while pos < upto:
                    ev = log.events[pos]
                    pos += 1
                    ns = (ev["object"].get("metadata") or {}).get("namespace")
                    if request.namespace is None or ns == request.namespace:
                        yield ev
                if bookmark is not None:
                    yield {"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": "v1", "metadata": {
                        "resourceVersion": str(bookmark)}}}
                if pos < len(log.events):
                    continue
                if disconnect.is_set():
                    return
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return
                if bookmarks and self.bookmark_interval > 0:
                    wake = max(0.0, next_bookmark - time.monotonic())
                    left = wake if left is None else min(left, wake)
                if self.stalls:
                    left = 0.2 if left is None else min(left, 0.2)  # a stall may begin
                changed = asyncio.ensure_future(log.changed.wait())
                gone = asyncio.ensure_future(disconnect.wait())
                done, pending = await asyncio.wait({changed, gone}, timeout=left,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for t in pending:
                    t.cancel()

        # ------------------------------------------------------------------------ control
        async def _control(self, request, what: str):
            method = str(request.method.value if hasattr(request.method, "value") else request.method)
            body = request.data if isinstance(request.data, dict) else {}
            if what == "reset" and method == "POST":
                async with self.mutation_lock, self._lock:
                    self._objects._objects.clear()
                    self._buses = collections.defaultdict(EventLog)
                    self.horizon = self.rv
                    self.faults.clear()
                    self.binds.clear()
                    self.refused_binds.clear()
                    self.bind_nodes.clear()
                    self.evictions.clear()
                    self.faults_fired = 0
                    self.verbs.clear()
                    self.stalls.clear()
                    self.watch_requests.clear()
                    self.bookmark_interval = 1.0
                self._disconnect_watches()
                return aiohttp.web.json_response({"rv": self.rv})
            if what == "faults" and method == "POST":
                for rule in body.get("rules", []):
                    self.faults.append(Fault(**rule))
                return aiohttp.web.json_response({"faults": len(self.faults)})
            if what == "faults" and method == "DELETE":
                self.faults.clear()
                return aiohttp.web.json_response({"faults": 0})
            if what == "load" and method == "POST":
                return aiohttp.web.json_response({"loaded": await self._load(body.get("objects") or [])})
            if what == "verbs" and method == "DELETE":
                self.verbs.clear()
                return aiohttp.web.json_response({})
            if what == "stall" and method == "POST":
                self.stalls.append(Stall(body.get("resource", ".*"), body.get("agent"), body.get("seconds")))
                return aiohttp.web.json_response({"stalls": len(self.stalls)})
            if what == "stall" and method == "DELETE":
                self.stalls.clear()
                self.stall_changed.set()
                self.stall_changed = asyncio.Event()
                return aiohttp.web.json_response({"stalls": 0})
            if what == "bookmarks" and method == "POST":
                self.bookmark_interval = float(body.get("interval", 1.0))
                return aiohttp.web.json_response({"interval": self.bookmark_interval})
            if what == "disconnect" and method == "POST":
                self._disconnect_watches()
                return aiohttp.web.json_response({})
            if what == "compact" and method == "POST":
                # Like an etcd compaction at the current revision: older versions are gone; a list
                # answers the current one, which stays watchable.
                self.horizon = self.rv
                return aiohttp.web.json_response({"horizon": self.horizon})
            if what == "stats":
                return aiohttp.web.json_response({
                    "rv": self.rv, "binds": dict(self.binds), "refusedBinds": dict(self.refused_binds), "bindNodes": self.bind_nodes,
                    "evictions": dict(self.evictions), "faultsFired": self.faults_fired,
                    "faults": [{"path": f.path.pattern, "seen": f.seen, "fired": f.fired}
                               for f in self.faults],
                    "requests": self.requests_served, "verbs": sorted(self.verbs),
                    "openWatches": {k: v for k, v in self.open_watches.items() if v},
                    "watchRequests": dict(self.watch_requests)})
            return aiohttp.web.json_response({"error": f"unknown control {method} {what}"}, status=404)

        async def _load(self, objects: list) -> int:
            """Store objects as if created through the API (test set-up in one request)."""
            by_kind = {kind: (kmock.resource(key), namespaced) for key, namespaced, kind, _ in RESOURCES}
            async with self.mutation_lock, self._lock:
                for obj in objects:
                    resource, namespaced = by_kind[obj["kind"]]
                    md = obj.setdefault("metadata", {})
                    ns = (md.get("namespace") or "default") if namespaced else None
                    if ns:
                        md["namespace"] = ns
                    md.setdefault("uid", str(uuid.uuid4()))
                    md.setdefault("creationTimestamp", _now())
                    md["resourceVersion"] = self.next_rv()
                    key = (resource, ns, md["name"])
                    if self.lookup(resource, ns, md["name"]) is not None:
                        raise self.error(409, "AlreadyExists", f"{key} exists")
                    self._objects[key] = obj
                    await self._buses[resource].put({"type": "ADDED", "object": self._objects[key].raw})
            return len(objects)

        def _disconnect_watches(self) -> None:
            self.disconnect.set()
            self.disconnect = asyncio.Event()

    return KaiwoEmulator


async def _serve(port: int) -> None:
    import kmock

    emulator_cls = make_emulator_class()
    async with emulator_cls() as emu, kmock.Server(emu, port=port or None) as server:
        print(f"PORT {server.port}", flush=True)
        await asyncio.Event().wait()


class EmulatorProcess:
    """The emulator in a child process (its own interpreter and GIL, like a real API server), with
    the control endpoints as methods.

    Parameters
    ----------
    startup_timeout : float
        Seconds to wait for the child to listen.
    """

    def __init__(self, startup_timeout: float = 30.0):
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")])))
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.controller.emulator"],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                     cwd=root, env=env)
        deadline = time.monotonic() + startup_timeout
        line = ""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("PORT ") or not line:
                break
        if not line.startswith("PORT "):
            self.proc.kill()
            raise RuntimeError(f"the emulator did not start: {self.proc.stderr.read()[-2000:]}")
        self.port = int(line.split()[1])
        self.url = f"http://127.0.0.1:{self.port}"

    def _call(self, method: str, what: str, body: dict | None = None) -> dict:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"{self.url}/_emulator/{what}", data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=30) as resp:
            return json.loads(resp.read() or b"{}")

    def reset(self) -> dict:
        """Forget every object, fault and counter; end the open watches."""
        return self._call("POST", "reset", {})

    def inject(self, *rules: dict) -> None:
        """Add fault rules: dicts with ``method``, ``path`` (regex searched in the path and query),
        ``status``, ``delay``, ``times``, ``probability``, ``after``, ``seed`` (see ``Fault``)."""
        self._call("POST", "faults", {"rules": list(rules)})

    def load(self, objects: list[dict]) -> int:
        """Create many objects in one request (set-up of large tests; watches see them ADDED)."""
        return self._call("POST", "load", {"objects": list(objects)})["loaded"]

    def clear_faults(self) -> None:
        self._call("DELETE", "faults")

    def forget_verbs(self) -> None:
        """Start a new record of the (verb, group, resource) of requests (see ``stats``)."""
        self._call("DELETE", "verbs")

    def stall(self, resource: str = ".*", agent: str | None = None, seconds: float | None = None) -> None:
        """Stall the watches of resources whose plural matches ``resource`` (of clients whose
        User-Agent contains ``agent``): open and new ones stay open and deliver nothing until
        :meth:`unstall` (or ``seconds``), then everything late. Lists and other requests are served."""
        self._call("POST", "stall", {"resource": resource, "agent": agent, "seconds": seconds})

    def unstall(self) -> None:
        self._call("DELETE", "stall")

    def bookmarks(self, interval: float) -> None:
        """Seconds between BOOKMARK events on watches that allow them (0: none)."""
        self._call("POST", "bookmarks", {"interval": interval})

    def disconnect_watches(self) -> None:
        self._call("POST", "disconnect", {})

    def compact(self) -> None:
        """Later watches from any version older than the current one get 410 Gone."""
        self._call("POST", "compact", {})

    def stats(self) -> dict:
        return self._call("GET", "stats")

    def kubeconfig(self, path: str) -> str:
        """Write a kubeconfig for this emulator to ``path``; returns the path."""
        doc = {"apiVersion": "v1", "kind": "Config", "current-context": "emulator",
               "clusters": [{"name": "emulator", "cluster": {"server": self.url}}],
               "users": [{"name": "tester", "user": {"token": "test-token"}}],
               "contexts": [{"name": "emulator", "context": {"cluster": "emulator", "user": "tester"}}]}
        with open(path, "w") as f:
            json.dump(doc, f)
        return path

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--port", type=int, default=0, help="TCP port on 127.0.0.1 (default: any free one)")
    args = p.parse_args(argv)
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
