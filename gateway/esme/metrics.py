"""The gateway's Prometheus metrics and its /metrics and /health endpoint (prometheus-client's exposition, asyncio's server).

One :class:`GatewayMetrics` per gateway, in a registry of its own (tests run
several gateways in one process). :class:`MetricsServer` answers
``GET /metrics`` with the text exposition format and ``GET /health`` with
``200 ok`` while ``healthy()`` (the gateway: a bind is up), ``503`` otherwise; anything else
is ``404``. Requests are read up to :data:`REQUEST_OCTETS_MAX`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

# A request line and headers longer than this are refused (nobody legitimate sends more to /metrics).
REQUEST_OCTETS_MAX: Final = 8192
READ_TIMEOUT_S: Final = 5.0
# MO→MT latency buckets, seconds: the SMSC's loopback is sub-millisecond, a loaded PostgreSQL tens of ms.
LATENCY_BUCKETS_S: Final = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0)


class GatewayMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.mo = Counter("simwallet_mo", "Mobile-originated messages received, by service", ["service"], registry=r)
        self.mt = Counter("simwallet_mt", "Mobile-terminated messages the SMSC accepted, by service", ["service"], registry=r)
        self.latency = Histogram("simwallet_mo_mt_seconds", "deliver_sm read to its reply accepted", buckets=LATENCY_BUCKETS_S, registry=r)
        self.binds_up = Gauge("simwallet_binds_up", "SMPP binds up", registry=r)
        self.throttles = Counter("simwallet_throttles", "submit_sm refused with ESME_RTHROTTLED or ESME_RMSGQFUL", registry=r)
        self.replays = Counter("simwallet_replays", "Requests answered again from the stored reply (redeliveries)", registry=r)
        self.receipts = Counter("simwallet_receipts", "Delivery receipts received", registry=r)
        self.errors = Counter("simwallet_errors", "Errors, by kind", ["kind"], registry=r)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class MetricsServer:
    """``/metrics`` and ``/health`` over HTTP/1.0 on ``host:port`` (port 0: any free one, see :attr:`port`)."""

    def __init__(self, metrics: GatewayMetrics, healthy: Callable[[], bool], host: str = "127.0.0.1", port: int = 0) -> None:
        self.metrics = metrics
        self.healthy = healthy
        self.host = host
        self.port = port
        self._server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), READ_TIMEOUT_S)
        except (TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        if len(head) > REQUEST_OCTETS_MAX:
            status, body, kind = "431 Request Header Fields Too Large", b"", "text/plain"
        else:
            parts = head.split(b" ", 2)
            path = parts[1].decode("latin-1") if len(parts) >= 2 and parts[0] == b"GET" else ""
            if path == "/metrics":
                status, body, kind = "200 OK", self.metrics.exposition(), CONTENT_TYPE_LATEST
            elif path == "/health":
                status, body, kind = (
                    ("200 OK", b"ok\n", "text/plain") if self.healthy() else ("503 Service Unavailable", b"no bind\n", "text/plain")
                )
            else:
                status, body, kind = "404 Not Found", b"", "text/plain"
        writer.write(f"HTTP/1.0 {status}\r\nContent-Type: {kind}\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        with contextlib.suppress(ConnectionError):
            await writer.drain()
        writer.close()
