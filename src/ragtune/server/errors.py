"""API errors in OpenAI's shape: ``{"error": {"message", "type", "code"}}`` with a message that says what to do."""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse


class ApiError(Exception):
    """An error the API reports to the client with ``status``."""

    def __init__(
        self, status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type
        self.code = code
        self.headers = headers

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, self.type, self.code, self.headers)


def error_response(
    status: int, message: str, type: str = "invalid_request_error", code: str | None = None,
    headers: dict[str, str] | None = None, **extra: Any,
) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": type, "code": code, **extra}}, status_code=status,
                        headers=headers)
