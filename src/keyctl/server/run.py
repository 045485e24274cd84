"""Running the server: in a thread for tests and ``keyctl demo`` (``start``), or in the foreground for
``keyctl server`` (``serve``), always on a socket bound before uvicorn starts so port 0 works."""

from __future__ import annotations

import asyncio
import dataclasses
import ipaddress
import json
import logging
import os
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.supervisors import Multiprocess

from keyctl.errors import AlreadyExists, InvalidInput, KeyctlError, StateError
from keyctl.server.policy import Clock, Policy, PolicyError, Settings
from keyctl.server.storage import open_database
from keyctl.server.web import STATUS, build_app

DEFAULT_PORT = 8765
DEFAULT_RATE_LIMIT = 120
DEFAULT_MAX_FAILURES = 5
DEFAULT_REQUEST_TIMEOUT = 10.0
DEFAULT_IP_MAX_FAILURES = 100

logger = logging.getLogger(__name__)


class _ParserRefusalsAtDebug(logging.Filter):
    """uvicorn warns for every request its HTTP parser refuses: a client's error, which anyone can send
    without signing in (log flooding). HttpProtocol logs it at debug level instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "Invalid HTTP request received."


_parser_refusals_at_debug = _ParserRefusalsAtDebug()


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, with two changes.

    A request must arrive whole, head and body, within ``request_timeout`` seconds of the connection being
    ready for it; otherwise it is answered 408 and the connection closed (uvicorn has no such timeout: a
    body that never completes held its connection forever). And what the HTTP parser refuses (a malformed
    Content-Length...) is answered in the API's JSON error shape instead of uvicorn's plain text.
    """

    request_timeout = DEFAULT_REQUEST_TIMEOUT
    _deadline: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.logger.addFilter(_parser_refusals_at_debug)  # once: a logger keeps one copy of a filter
        self._arm()

    def on_message_complete(self) -> None:
        self._disarm()
        super().on_message_complete()

    def on_response_complete(self) -> None:
        super().on_response_complete()
        if not self.transport.is_closing():
            self._arm()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        logger.debug("refused a malformed HTTP request from %s", self.client)
        self._send_error("invalid_request", "malformed HTTP request (check Content-Length and headers)")

    def _arm(self) -> None:
        self._disarm()
        self._deadline = self.loop.call_later(self.request_timeout, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        cycle = self.cycle
        # Waiting for a head (no request yet, or the last one answered) or for the rest of a body; a
        # pipelined request already complete is being answered, and is left alone.
        if self.transport.is_closing() or not (cycle is None or cycle.response_complete or cycle.more_body):
            return
        logger.debug("dropping %s: no complete request within %s s", self.client, self.request_timeout)
        if cycle is not None and cycle.response_started and not cycle.response_complete:
            self.transport.close()
            return
        self._send_error("request_timeout", f"the request did not arrive within {self.request_timeout} s")

    def _send_error(self, code: str, message: str) -> None:
        status = STATUS[code]
        body = json.dumps({"error": code, "message": message}).encode()
        head = b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(
            body
        )
        self.transport.write(STATUS_LINE[status] + head + body)
        self.transport.close()


def outbox_path(db: Path | str) -> Path:
    """Where unblock and invite links go: next to an SQLite file; in the data directory for a URL."""
    if isinstance(db, Path):
        return db.with_name(db.name + ".outbox.jsonl")
    from keyctl.config import data_dir

    return data_dir() / "server.outbox.jsonl"


def _bind(host: str, port: int) -> socket.socket:
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        # proto must be IPPROTO_TCP (not 0) or asyncio leaves Nagle on and each response waits ~40 ms.
        sock = socket.socket(family, kind, proto)
    except OSError as error:
        raise InvalidInput(
            f"cannot resolve --host {host} ({error})", "pass an IP address such as 127.0.0.1"
        ) from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as error:
        sock.close()
        raise InvalidInput(
            f"cannot listen on {host} port {port} ({error.strerror or error})",
            "pass another --port (0 picks a free one) or --host",
        ) from None
    return sock


def _networks(cidrs: tuple[str, ...], option: str = "--trusted-proxy") -> tuple[str, ...]:
    """--trusted-proxy (or ``option``) values as normalized networks (an address alone is a /32 or /128)."""
    networks = []
    for cidr in cidrs:
        try:
            networks.append(str(ipaddress.ip_network(cidr.strip(), strict=False)))
        except ValueError:
            raise InvalidInput(
                f"{option} {cidr!r} is not an address or network",
                "pass the load balancer's address or network, e.g. 10.0.0.5 or 10.0.0.0/24",
            ) from None
    return tuple(networks)


def _check_origin(origin: str, rp_id: str) -> None:
    parts = urlsplit(origin)
    host = parts.hostname or ""
    if parts.scheme not in ("http", "https") or not host or parts.path not in ("", "/") or parts.query:
        raise InvalidInput(f"--origin {origin!r} is not an origin", "use e.g. https://login.example.com")
    if not (host == rp_id or host.endswith("." + rp_id)):
        raise InvalidInput(
            f"the origin's host {host} is not {rp_id} or a subdomain of it",
            "make --rp-id the origin's host or a registrable suffix of it",
        )


@dataclass
class ServerHandle:
    """A server started with ``start``: use it as a context manager, or call ``stop()``."""

    url: str  # the origin browsers use
    local_url: str  # where the server listens (differs from url behind a TLS proxy)
    admin_token: str
    db: Path | str  # an SQLite file, or a postgresql:// URL
    outbox_path: Path
    policy: Policy
    _server: uvicorn.Server
    _thread: threading.Thread

    def create_user(self, email: str, password: str) -> None:
        _translate(lambda: self.policy.create_user(email, password))

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self.policy.close()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, value: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


@dataclass(frozen=True)
class Prepared:
    url: str
    local_url: str
    admin_token: str
    policy: Policy
    server: uvicorn.Server
    sock: socket.socket
    db: Path | str
    request_timeout: float


def prepare(
    db: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rp_id: str = "localhost",
    origin: str | None = None,
    admin_token: str | None = None,
    clock: Clock = time.time,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    max_failures: int = DEFAULT_MAX_FAILURES,
    device_bound_only: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ip_max_failures: int = DEFAULT_IP_MAX_FAILURES,
    trusted_proxies: tuple[str, ...] = (),
    admin_emails: tuple[str, ...] = (),
    captcha_exempt: tuple[str, ...] = (),
) -> Prepared:
    """Open the database, bind the socket and build the app, without serving yet."""
    if origin is not None:
        _check_origin(origin, rp_id)
    if rate_limit < 1 or max_failures < 1 or ip_max_failures < 1:
        raise InvalidInput("--rate-limit and the failure limits must be at least 1", "pass a positive number")
    sock = _bind(host, port)
    try:
        bound_port = sock.getsockname()[1]
        origin = origin or f"http://localhost:{bound_port}"
        _check_origin(origin, rp_id)
        token = admin_token or secrets.token_urlsafe(32)
        settings = Settings(
            rp_id=rp_id,
            origin=origin,
            outbox=outbox_path(db),
            admin_token=token,
            max_failures=max_failures,
            rate_limit=rate_limit,
            device_bound_only=device_bound_only,
            ip_max_failures=ip_max_failures,
            trusted_proxies=_networks(trusted_proxies),
            admin_emails=tuple(e.strip().lower() for e in admin_emails),
            captcha_exempt=_networks(captcha_exempt, "--captcha-allow"),
        )
        policy = Policy(open_database(db), settings, clock)
        policy.cleanup()
        app = build_app(policy, secure_cookie=origin.startswith("https://"))
        # httptools (uvicorn's C parser, a dependency) rather than a silent fallback to h11, which costs
        # about 0.4 ms more server CPU per request.
        protocol = type("HttpProtocol", (HttpProtocol,), {"request_timeout": request_timeout})
        # proxy_headers off: uvicorn would otherwise take X-Forwarded-For from any loopback peer; which
        # proxies are trusted is --trusted-proxy's one rule (web.client_ip).
        config = uvicorn.Config(
            app, http=protocol, log_level="warning", access_log=False, lifespan="off", proxy_headers=False
        )
        address = f"[{host}]" if ":" in host else host
        local_url = f"http://{address}:{bound_port}"
        return Prepared(origin, local_url, token, policy, uvicorn.Server(config), sock, db, request_timeout)
    except BaseException:
        sock.close()
        raise


def start(
    db: Path | str,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    rp_id: str = "localhost",
    origin: str | None = None,
    admin_token: str | None = None,
    clock: Clock = time.time,
    rate_limit: int = DEFAULT_RATE_LIMIT,
    max_failures: int = DEFAULT_MAX_FAILURES,
    device_bound_only: bool = False,
    request_timeout: float = DEFAULT_REQUEST_TIMEOUT,
    ip_max_failures: int = DEFAULT_IP_MAX_FAILURES,
    trusted_proxies: tuple[str, ...] = (),
    admin_emails: tuple[str, ...] = (),
    captcha_exempt: tuple[str, ...] = (),
) -> ServerHandle:
    """Serve in a background thread; returns once the server accepts connections."""
    prepared = prepare(
        db,
        host=host,
        port=port,
        rp_id=rp_id,
        origin=origin,
        admin_token=admin_token,
        clock=clock,
        rate_limit=rate_limit,
        max_failures=max_failures,
        device_bound_only=device_bound_only,
        request_timeout=request_timeout,
        ip_max_failures=ip_max_failures,
        trusted_proxies=trusted_proxies,
        admin_emails=admin_emails,
        captcha_exempt=captcha_exempt,
    )
    thread = threading.Thread(
        target=prepared.server.run, kwargs={"sockets": [prepared.sock]}, name="keyctl-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not prepared.server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            prepared.server.should_exit = True
            prepared.policy.close()
            raise StateError("the reference server did not start", "rerun with --debug to see why")
        time.sleep(0.005)
    return ServerHandle(
        url=prepared.url,
        local_url=prepared.local_url,
        admin_token=prepared.admin_token,
        db=db,
        outbox_path=prepared.policy.settings.outbox,
        policy=prepared.policy,
        _server=prepared.server,
        _thread=thread,
    )


def serve(prepared: Prepared, workers: int = 1) -> None:
    """Serve in the foreground until SIGINT/SIGTERM, then close the database and return normally.

    uvicorn shuts down gracefully on those signals and then re-raises them to the handlers it found;
    with no-op handlers in place the process ends through the normal path, with exit code 0.
    """
    if workers > 1:
        _serve_workers(prepared, workers)
        return
    stops = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in stops}
    try:
        prepared.server.run(sockets=[prepared.sock])
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        prepared.policy.close()


WORKER_ENV = "KEYCTL_SERVER_WORKER"


def _serve_workers(prepared: Prepared, workers: int) -> None:
    """``workers`` processes sharing the bound socket, under uvicorn's supervisor: it replaces a worker
    that dies and stops them all on SIGINT/SIGTERM. It starts them with the ``spawn`` method and pickles
    its Config, so each worker builds its app itself (``worker_app``) from settings passed in the
    environment (never argv: they hold the admin token and maybe a database password), opening its own
    database connection. The schema was migrated and expired sessions forgotten here, once."""
    prepared.policy.close()
    settings = prepared.policy.settings
    os.environ[WORKER_ENV] = json.dumps(
        {
            "db": str(prepared.db),
            "settings": {**dataclasses.asdict(settings), "outbox": str(settings.outbox)},
            "request_timeout": prepared.request_timeout,
        }
    )
    config = uvicorn.Config(
        f"{__name__}:worker_app",
        factory=True,
        http=HttpProtocol,
        workers=workers,
        log_level="warning",
        access_log=False,
        lifespan="off",
        proxy_headers=False,
    )
    try:
        Multiprocess(config, sockets=[prepared.sock]).run()
    finally:
        del os.environ[WORKER_ENV]


def worker_app() -> Starlette:
    """The app of one ``--workers`` process (called by uvicorn in the worker)."""
    spec = json.loads(os.environ[WORKER_ENV])
    # The Config arrives pickled: its protocol class is the base one, so the timeout is set here.
    HttpProtocol.request_timeout = spec["request_timeout"]
    fields = spec["settings"]
    settings = Settings(
        **{
            **fields,
            "outbox": Path(fields["outbox"]),
            "trusted_proxies": tuple(fields["trusted_proxies"]),
            "admin_emails": tuple(fields["admin_emails"]),
            "captcha_exempt": tuple(fields["captcha_exempt"]),
        }
    )
    policy = Policy(open_database(spec["db"]), settings)
    return build_app(policy, secure_cookie=settings.origin.startswith("https://"))


def create_user(db: Path | str, email: str, password: str, clock: Clock = time.time) -> None:
    """Add an account straight to a server database (the server may be running)."""
    settings = Settings(rp_id="localhost", origin="http://localhost", outbox=outbox_path(db), admin_token="")
    policy = Policy(open_database(db), settings, clock)
    try:
        _translate(lambda: policy.create_user(email, password))
    finally:
        policy.close()


def _translate(action: Callable[[], object]) -> None:
    """Run a policy action for the CLI or a test, turning its refusal into a KeyctlError."""
    try:
        action()
    except PolicyError as error:
        kind: type[KeyctlError] = AlreadyExists if error.code == "user_exists" else InvalidInput
        remedy = {
            "user_exists": "pick another email (the account exists: keyctl admin users show EMAIL)",
            "weak_password": "choose a longer, uncommon password (a passphrase of several words works)",
        }.get(error.code, "check the email address")
        raise kind(error.message, remedy) from None
