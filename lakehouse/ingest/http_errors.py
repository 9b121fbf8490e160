"""Error answers with a reason code: ``{"error": <reason>, "detail": …}``."""

from __future__ import annotations

from fastapi.responses import JSONResponse


class HttpError(Exception):
    """An error answer with a reason code."""

    def __init__(self, status: int, reason: str, detail: str, headers: dict[str, str] | None = None):
        super().__init__(detail)
        self.status, self.reason, self.detail, self.headers = status, reason, detail, headers or {}


def error_response(exc: HttpError) -> JSONResponse:
    """The JSON answer of ``exc``."""
    return JSONResponse(
        {"error": exc.reason, "detail": exc.detail}, status_code=exc.status, headers=exc.headers
    )


