"""Reference tables generated from the code: the server's JSON API (its routes, the handlers' docstrings
and the error catalogue of ``keyctl.server.web``) and the exit codes (``keyctl.errors``)."""

from __future__ import annotations

import inspect
import re

from keyctl import errors
from keyctl.server import web
from tests.docs.generated import table

API_GROUPS = {
    "api-account": lambda path: not path.startswith(("/api/passkeys", "/api/admin/")),
    "api-passkeys": lambda path: path.startswith("/api/passkeys"),
    "api-admin": lambda path: path.startswith("/api/admin/"),
}


def _docstring_parts(handler: object) -> dict[str, str]:
    """``Label: text`` paragraphs of a handler's docstring, each unwrapped to one line."""
    doc = inspect.getdoc(handler) or ""
    parts: dict[str, str] = {}
    for paragraph in doc.split("\n\n"):
        label, sep, text = paragraph.partition(": ")
        assert sep, (handler, paragraph)
        assert label in ("Query", "Request", "Response"), (handler, paragraph)
        parts[label] = re.sub(r"\s*\n\s*", " ", text).strip()
    return parts


def endpoints() -> list[web.Endpoint]:
    return web.Api.endpoints(web.Api.__new__(web.Api))


def api_table(group: str) -> str:
    """The endpoints of GROUP: method and path, request body, response, whether the rate limit counts it."""
    rows = []
    for endpoint in endpoints():
        if not API_GROUPS[group](endpoint.path):
            continue
        parts = _docstring_parts(endpoint.handler)
        assert "Response" in parts, f"{endpoint.method} {endpoint.path}: its docstring lacks Response:"
        query = parts.get("Query", "").strip("`")
        rows.append(
            [
                f"`{endpoint.method} {endpoint.path}{query}`",
                parts.get("Request", ""),
                parts["Response"],
                "yes" if endpoint.kind == "auth" else "",
            ]
        )
    return table(["method, path", "request body", "response body", "rate limited"], rows)


def api_errors() -> str:
    rows = [[f"`{code}`", str(error.status), error.when] for code, error in web.ERRORS.items()]
    return table(["code", "status", "when"], rows)


def _raised_as(code: errors.ExitCode) -> str:
    """The catalogue's exception classes that exit with CODE, with their default message."""
    found: list[str] = []
    pending = [errors.KeyctlError]
    while pending:
        cls = pending.pop(0)
        pending += cls.__subclasses__()
        if cls.__module__ == errors.__name__ and "exit_code" in vars(cls) and cls.exit_code == code:
            default = getattr(cls, "default_message", "")
            found.append(f"`{cls.__name__}`" + (f' ("{default}")' if "default_message" in vars(cls) else ""))
    return ", ".join(found)


def exit_codes() -> str:
    rows = [
        [str(int(code)), f"`{code.name}`", errors.MEANINGS[code], _raised_as(code)]
        for code in errors.ExitCode
    ]
    return table(["code", "name", "meaning", "raised as (`keyctl.errors`)"], rows)
