"""The HTTP side of a worker, trainer or demo: metrics, health, readiness and the dashboard.

Routes::

    /metrics            Prometheus text format
    /healthz            200 while the process is alive (its loop is turning), else 503
    /readyz             200 when ready to serve (partitions assigned, model loaded, caught up)
    /                   the live dashboard (when a fleet view is attached)
    /static/<file>      the dashboard's own files (shipped in the package, no CDN)
    /api/fleet          the fleet overview as JSON
    /api/devices/<id>   one device's timeline as JSON

Health and readiness answer with the checks they made as JSON, so that ``curl`` tells why. The
server binds 127.0.0.1 unless told otherwise; it runs in daemon threads beside the loop.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Protocol
from urllib.parse import unquote, urlsplit

from pipeline.exceptions import ConfigError

Checks = Callable[[], dict[str, bool]]

STATIC_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class HttpConfig:
    """Where the status server listens, and when a worker counts as caught up.

    ``port`` 0 picks a free port; ``ready_max_lag``: records a worker may be behind the end of
    its partitions and still be ready; ``stall_s``: a loop that has not turned for this long is
    not healthy.
    """

    host: str = "127.0.0.1"
    port: int = 9400
    ready_max_lag: int = 10_000
    stall_s: float = 60.0


class Exposition(Protocol):
    def exposition(self) -> bytes: ...


class FleetPages(Protocol):
    """What the dashboard reads (see :class:`pipeline.observability.fleet.FleetView`)."""

    def snapshot(self) -> dict: ...

    def device(self, device: str) -> dict | None: ...


class StatusServer:
    """Serves one process's metrics, probes and (optionally) its fleet dashboard.

    >>> from pipeline.observability.metrics import WorkerMetrics
    >>> server = StatusServer(HttpConfig(port=0), WorkerMetrics(), health=lambda: {"up": True})
    >>> server.start().url.startswith("http://127.0.0.1:")
    True
    >>> server.close()
    """

    def __init__(
        self,
        config: HttpConfig,
        metrics: Exposition,
        health: Checks,
        ready: Checks | None = None,
        fleet: FleetPages | None = None,
    ) -> None:
        self.config = config
        self.metrics, self.health, self.ready, self.fleet = metrics, health, ready, fleet
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1] if self._httpd else self.config.port

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}/"

    def start(self) -> StatusServer:
        """Bind and serve in a background thread; a port in use is a :class:`ConfigError`."""
        handler = type("Handler", (_Handler,), {"server_side": self})
        try:
            self._httpd = ThreadingHTTPServer((self.config.host, self.config.port), handler)
        except OSError as exc:
            raise ConfigError(
                f"cannot listen on {self.config.host}:{self.config.port}: {exc.strerror} "
                "(set [http] port, HARSTREAM_HTTP_PORT or --http-port; 0 picks a free one)"
            ) from exc
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="status-server", daemon=True
        )
        self._thread.start()
        log.info("status server on %s", self.url, extra={"url": self.url})
        return self

    def close(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None


class _Handler(BaseHTTPRequestHandler):
    server_side: StatusServer
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (the http.server API)
        side = self.server_side
        path = unquote(urlsplit(self.path).path)
        if path == "/metrics":
            from pipeline.observability.metrics import CONTENT_TYPE  # prometheus: not at start-up

            return self._send(HTTPStatus.OK, CONTENT_TYPE, side.metrics.exposition())
        if path == "/healthz":
            return self._checks(side.health())
        if path == "/readyz":
            return self._checks(side.ready() if side.ready else side.health())
        if side.fleet is not None:
            if path in ("/", "/index.html"):
                return self._static("index.html")
            if path.startswith("/static/"):
                return self._static(path.removeprefix("/static/"))
            if path == "/api/fleet":
                return self._json(HTTPStatus.OK, side.fleet.snapshot())
            if path.startswith("/api/devices/"):
                found = side.fleet.device(path.removeprefix("/api/devices/"))
                if found is not None:
                    return self._json(HTTPStatus.OK, found)
                return self._json(HTTPStatus.NOT_FOUND, {"error": "no such device"})
        self._json(HTTPStatus.NOT_FOUND, {"error": f"no route {path}"})

    def _checks(self, checks: dict[str, bool]) -> None:
        ok = all(checks.values())
        status = HTTPStatus.OK if ok else HTTPStatus.SERVICE_UNAVAILABLE
        self._json(status, {"status": "ok" if ok else "unavailable", "checks": checks})

    def _static(self, name: str) -> None:
        suffix = name[name.rfind(".") :] if "." in name else ""
        if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
            return self._json(HTTPStatus.NOT_FOUND, {"error": "no such file"})
        page = resources.files("pipeline.observability") / "dashboard" / name
        if not page.is_file():
            return self._json(HTTPStatus.NOT_FOUND, {"error": "no such file"})
        self._send(HTTPStatus.OK, STATIC_TYPES[suffix], page.read_bytes())

    def _json(self, status: HTTPStatus, body: object) -> None:
        data = json.dumps(body, allow_nan=False, default=_plain).encode()
        self._send(status, "application/json", data)

    def _send(self, status: HTTPStatus, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args) -> None:  # noqa: A002
        log.debug("%s %s", self.address_string(), format % args)  # scrapes are not news


def _plain(value: object) -> object:
    """NumPy scalars and arrays as plain JSON values."""
    tolist = getattr(value, "tolist", None)
    if tolist is not None:
        return tolist()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
