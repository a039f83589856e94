"""The daemon's one HTTP port: /metrics, /healthz, /readyz, /status."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest

log = structlog.get_logger(__name__)

StatusProvider = Callable[[], dict[str, Any]]
Readiness = Callable[[], tuple[bool, dict[str, Any]]]


def _json(data: Any, status: int = 200) -> web.Response:
    body = orjson.dumps(data, default=str, option=orjson.OPT_INDENT_2)
    return web.Response(body=body, status=status, content_type="application/json")


class HttpServer:
    """Serve metrics and health on (host, port); port 0 picks a free one (see `port` after start)."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        status: StatusProvider,
        readiness: Readiness,
        registry: CollectorRegistry = REGISTRY,
    ) -> None:
        self.host = host
        self.port = port
        self._status = status
        self._readiness = readiness
        self._registry = registry
        self._runner: web.AppRunner | None = None

    async def start(self) -> None:
        """Bind and start serving."""
        app = web.Application()
        app.add_routes(
            [
                web.get("/metrics", self._metrics),
                web.get("/healthz", self._healthz),
                web.get("/readyz", self._readyz),
                web.get("/status", self._status_view),
            ]
        )
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        sockets = getattr(site._server, "sockets", None) or []  # aiohttp exposes no public accessor
        if sockets:
            self.port = sockets[0].getsockname()[1]
        log.info("http_listening", host=self.host, port=self.port)

    async def close(self) -> None:
        """Stop serving; idempotent."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, _: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self._registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _healthz(self, _: web.Request) -> web.Response:
        return _json({"status": "alive"})

    async def _readyz(self, _: web.Request) -> web.Response:
        ready, detail = self._readiness()
        return _json({"ready": ready, **detail}, status=200 if ready else 503)

    async def _status_view(self, _: web.Request) -> web.Response:
        return _json(self._status())
