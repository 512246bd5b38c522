"""Answers the clinician view sends whatever happens: security headers on every response
(500s included), and no request body beyond ``MAX_BODY_BYTES`` read."""

from __future__ import annotations

from fastapi import Request, Response
from fastapi.responses import PlainTextResponse
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ble_gateway.errors import GatewayError
from ble_gateway.web.common import state

CSP = (
    "default-src 'none'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
    "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}
MAX_BODY_BYTES = 64 * 1024


class BodyLimit:
    """No request body beyond ``MAX_BODY_BYTES`` is read (every form of the view is a few
    hundred bytes): a declared larger one is answered 413 at once, an undeclared one is cut off
    when it passes the limit, before any route parses it or checks the session."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > MAX_BODY_BYTES:
            await _too_large()(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > MAX_BODY_BYTES:
                raise _BodyTooLargeError  # the route's body parser gives up here
            return message

        async def answer(message: Message) -> None:
            if seen <= MAX_BODY_BYTES:
                await send(message)
            elif message["type"] == "http.response.start":  # whatever the parser made of it
                await _too_large()(scope, receive, send)

        try:
            await self.app(scope, limited, answer)
        except _BodyTooLargeError:
            await _too_large()(scope, receive, send)


def _too_large() -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": "no-store", "Connection": "close"}
    return PlainTextResponse(f"request body over {MAX_BODY_BYTES} bytes", 413, headers=headers)


class _BodyTooLargeError(GatewayError):
    pass


class SecurityHeaders(BaseHTTPMiddleware):
    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        return harden(request, await call_next(request))


def harden(request: Request, response: Response) -> Response:
    if state(request).secure_cookies:  # served over HTTPS: browsers keep to it
        response.headers["Strict-Transport-Security"] = "max-age=31536000"
    response.headers.update(SECURITY_HEADERS)
    if not request.url.path.startswith("/static"):
        response.headers["Cache-Control"] = "no-store"
    return response
