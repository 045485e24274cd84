"""The HTTP side every Python interop relying party shares (the convention of
tests/interop/simplewebauthn/server.mjs): JSON routes, a session per ``sid`` cookie, the ``/control``
variant, a free loopback port printed as ``listening PORT``. The WebAuthn logic lives in each app."""

from __future__ import annotations

import json
import secrets
import socket
from collections.abc import Callable
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

Answer = tuple[int, Any]
Handler = Callable[[dict[str, Any], dict[str, Any]], Answer]


class Failure(Exception):
    """The relying party refuses: ``{"error": message}`` with a 400."""


def run(
    handlers: dict[str, Handler], started: Callable[[str], None], failures: tuple[type[Exception], ...]
) -> None:
    """Serve ``handlers`` (path -> handler(body, session)) on 127.0.0.1; ``started(origin)`` first."""
    sessions: dict[str, dict[str, Any]] = {}

    def route(handler: Handler) -> Callable[[Request], Any]:
        async def endpoint(request: Request) -> Response:
            sid = request.cookies.get("sid")
            if sid is None or sid not in sessions:
                sid = secrets.token_hex(16)
                sessions[sid] = {}
            try:
                status, answer = handler(json.loads(await request.body() or b"{}"), sessions[sid])
            except (Failure, *failures) as error:
                status, answer = 400, {"error": f"{type(error).__name__}: {error}"}
            response = JSONResponse(answer, status_code=status)
            response.set_cookie("sid", sid, httponly=True)
            return response

        return endpoint

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    started(f"http://localhost:{port}")
    app = Starlette(routes=[Route(path, route(h), methods=["POST"]) for path, h in handlers.items()])
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    sock.listen(128)  # connections wait in the backlog until uvicorn accepts them
    print(f"listening {port}", flush=True)
    server.run(sockets=[sock])
