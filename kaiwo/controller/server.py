"""HTTP endpoints of the controller: ``/metrics``, ``/healthz`` and ``/readyz``.

* ``/metrics`` -- Prometheus text exposition (version 0.0.4) of :class:`ControllerMetrics`;
* ``/healthz`` -- liveness: 200 while the scheduling loop and the informers are alive and the loop
  has made progress recently; 500 otherwise, with the reason (the kubelet restarts the pod);
* ``/readyz``  -- readiness: 200 once every informer has listed its kind (the cache is complete),
  503 before, naming what is missing. Standby replicas are ready too: they keep a warm cache and
  serve metrics; ``kaiwo_leader`` tells which one schedules.

A standard-library threading HTTP server is enough for three tiny endpoints and keeps the
controller free of another event loop.
"""
from __future__ import annotations

import http.server
import logging
import threading
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST

log = logging.getLogger("kaiwo.controller.server")


class _Handler(http.server.BaseHTTPRequestHandler):
    server_version = "kaiwo"

    def do_GET(self):  # noqa: N802 - http.server's naming
        path = self.path.split("?", 1)[0]
        probes = self.server.probes
        try:
            if path == "/metrics":
                self._send(200, probes["metrics"]().encode(), CONTENT_TYPE_LATEST)
            elif path in ("/healthz", "/readyz"):
                ok, text = probes[path[1:]]()
                self._send(200 if ok else (500 if path == "/healthz" else 503), (text + "\n").encode(),
                           "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: try /metrics, /healthz or /readyz\n", "text/plain")
        except Exception as exc:  # noqa: BLE001 - a probe must answer, not hang
            log.exception("%s failed", path)
            self._send(500, f"{type(exc).__name__}: {exc}\n".encode(), "text/plain")

    def _send(self, code: int, body: bytes, ctype: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, fmt, *args):  # probes every few seconds: keep them out of the log
        log.debug("%s %s", self.address_string(), fmt % args)


class ProbeServer:
    """Serves the three endpoints on ``host:port`` in a background thread.

    Parameters
    ----------
    metrics : callable
        Returns the exposition text.
    healthz, readyz : callable
        Return ``(ok, text)``.
    port : int
        0 picks a free port (see :attr:`port` after :meth:`start`).
    host : str
        Listen address (all interfaces in a pod).
    """

    def __init__(self, metrics: Callable[[], str], healthz: Callable[[], tuple], readyz: Callable[[], tuple],
                 port: int = 8080, host: str = "0.0.0.0"):
        self._httpd = http.server.ThreadingHTTPServer((host, port), _Handler)
        self._httpd.daemon_threads = True
        self._httpd.probes = {"metrics": metrics, "healthz": healthz, "readyz": readyz}
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="probe-server", daemon=True)

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    def start(self) -> "ProbeServer":
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
