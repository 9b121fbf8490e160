"""Bounds on what a client can make the collector hold: header bytes, body bytes, waiting time.

- **Headers** (request line + header fields) are read before the API key or a signature can be
  checked, so they are bounded at the HTTP protocol: :class:`LimitedHttpProtocol` answers
  ``431`` and closes the connection once more than ``limits.max_header_bytes`` arrived without
  the end of the headers, or ``408`` when the headers do not complete within
  ``limits.body_read_timeout_seconds`` (a slowloris client).
- **Bodies** are bounded in bytes (413 as soon as the declared or streamed size exceeds
  ``limits.max_body_bytes``) and in time: :func:`read_body` answers ``408 body_timeout`` when the
  whole body has not arrived within ``limits.body_read_timeout_seconds``.
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any

from fastapi import Request
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

from lakehouse.ingest.http_errors import HttpError
from lakehouse.ingest.settings import Limits, load_collector_settings


async def read_body(request: Request, limits: Limits) -> bytes:
    """The raw body, refused with 413 beyond ``max_body_bytes`` and 408 if it arrives slower
    than ``body_read_timeout_seconds`` allows."""
    limit = limits.max_body_bytes
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            too_large = int(declared) > limit
        except ValueError:
            raise HttpError(400, "malformed_request", "invalid Content-Length") from None
        if too_large:
            raise HttpError(413, "body_too_large", f"body exceeds {limit} bytes")

    async def collect() -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise HttpError(413, "body_too_large", f"body exceeds {limit} bytes")
            chunks.append(chunk)
        return b"".join(chunks)

    timeout = limits.body_read_timeout_seconds
    try:
        return await asyncio.wait_for(collect(), timeout)
    except TimeoutError:
        raise HttpError(
            408, "body_timeout", f"the body did not arrive within {timeout:g}s", {"Connection": "close"}
        ) from None


@lru_cache(maxsize=1)
def _limits() -> Limits:
    return load_collector_settings().limits


def _plain_response(status: bytes, message: str) -> bytes:
    body = message.encode()
    return (
        b"HTTP/1.1 " + status + b"\r\ncontent-type: text/plain; charset=utf-8\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\nconnection: close\r\n\r\n" + body
    )


class LimitedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with a bound on header bytes and header time.

    The limits come from the collector settings of the serving process
    (the settings tree's ``collector`` section), so that every worker process —
    uvicorn imports this class by name — applies the same ones.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        limits = _limits()
        self._max_header_bytes = limits.max_header_bytes
        self._header_timeout = limits.body_read_timeout_seconds
        self._header_bytes = 0
        self._in_headers = False
        self._header_timer: asyncio.TimerHandle | None = None

    def data_received(self, data: bytes) -> None:
        if not self._in_headers and (self.cycle is None or self.cycle.response_complete):
            # The first bytes of a new request: its headers start here.
            self._in_headers, self._header_bytes = True, 0
            self._header_timer = self.loop.call_later(self._header_timeout, self._headers_too_slow)
        if self._in_headers:
            self._header_bytes += len(data)
        super().data_received(data)
        if self._in_headers and self._header_bytes > self._max_header_bytes and not self.transport.is_closing():
            self._refuse(b"431 Request Header Fields Too Large", "request headers too large")

    def on_headers_complete(self) -> None:
        self._end_of_headers()
        super().on_headers_complete()

    def _end_of_headers(self) -> None:
        self._in_headers = False
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        if self._in_headers and not self.transport.is_closing():
            self._refuse(b"408 Request Timeout", "request headers did not arrive in time")

    def _refuse(self, status: bytes, message: str) -> None:
        self._end_of_headers()
        self.transport.write(_plain_response(status, message))
        self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self._end_of_headers()
        super().connection_lost(exc)
