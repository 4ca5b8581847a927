"""What stands between ``smartecg serve`` and a caller: the Host check, the bearer token, the access log.

* Host check (DNS rebinding): a web page on another site can point its own name at 127.0.0.1
  and then read the API from the user's browser; its requests still carry that site's name in
  ``Host``, so only loopback names, the bound host and the operator's ``--allowed-host`` pass.
* Bearer token (``--token-file``): read once at start; ``/api/*`` needs ``Authorization:
  Bearer <token>``, compared in constant time. The page itself and ``/healthz`` stay open (no
  patient data in either), so a liveness probe needs no secret.
* Access log: method, path, status, seconds and sizes of each request, one line on stderr; never
  the query, the upload's bytes or its file name (a file name can be a patient's name).
"""
from __future__ import annotations

import hmac
import ipaddress
import logging
import sys
import time
from pathlib import Path

__all__ = ["LOOPBACK_HOSTS", "install_guards", "is_loopback", "is_wildcard", "read_token", "start_access_log"]

LOOPBACK_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_WILDCARDS = frozenset({"0.0.0.0", "::", ""})  # "every interface" is not a name a browser should use

access_log = logging.getLogger("smartecg.serve.access")


def read_token(path: str | Path) -> str:
    """The token in ``path`` (surrounding whitespace dropped); a one-line error when it cannot serve as one."""
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise ValueError(f"--token-file {path}: cannot be read ({exc.strerror or exc}); check the path") from None
    if len(token) < 16:
        raise ValueError(f"--token-file {path}: the token has {len(token)} characters; write at least 16 "
                         "(e.g. `python -c 'import secrets; print(secrets.token_urlsafe(32))' > FILE`)")
    return token


def is_loopback(host: str) -> bool:
    """True when ``host`` is reachable from this machine only."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def is_wildcard(host: str) -> bool:
    """True for "every interface" (0.0.0.0, ::): a bind address, not a name a client sends."""
    return host.strip("[]") in _WILDCARDS


def start_access_log() -> None:
    """The access log's lines on stderr, with their time, whatever the root logger does."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(message)s"))
    access_log.addHandler(handler)
    access_log.setLevel(logging.INFO)
    access_log.propagate = False


def allowed_hosts(bound_host: str, extra: list[str] | tuple[str, ...] = ()) -> frozenset[str]:
    """Names the ``Host`` header may carry: loopback, the bound host (unless a wildcard), the operator's additions."""
    names = set(LOOPBACK_HOSTS) | {h.strip().strip("[]").lower() for h in extra if h.strip()}
    if not is_wildcard(bound_host):
        names.add(bound_host.strip("[]").lower())
    return frozenset(names)


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without its port: "[::1]:8080" -> "::1", "a.b:80" -> "a.b"."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:header.find("]")] if "]" in header else header
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def install_guards(app, *, bound_host: str, extra_hosts=(), token: str | None = None) -> None:
    """Add the access log (outermost: it sees refusals too), the Host check and the token check to ``app``."""
    from fastapi.responses import JSONResponse

    hosts = allowed_hosts(bound_host, extra_hosts)
    expected = token.encode() if token else None

    @app.middleware("http")
    async def check_token(request, call_next):
        if expected is not None and request.url.path.startswith("/api/"):
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
                return JSONResponse({"error": "this server needs its token: send the header "
                                              "'Authorization: Bearer <token>' (ask the operator for it)"},
                                    status_code=401, headers={"WWW-Authenticate": "Bearer"})
        return await call_next(request)

    @app.middleware("http")
    async def check_host(request, call_next):
        name = _host_name(request.headers.get("host", ""))
        if name not in hosts:
            return JSONResponse({"error": f"Host {name or '(none)'!r} is not one this server answers to; the "
                                          "operator can add it with --allowed-host"}, status_code=421)
        return await call_next(request)

    @app.middleware("http")
    async def log_access(request, call_next):
        started = time.perf_counter()
        status, sent = 500, "-"
        try:
            response = await call_next(request)
            status, sent = response.status_code, response.headers.get("content-length", "-")
            return response
        finally:
            access_log.info("%s %s %d %.3fs in=%s out=%s", request.method, request.url.path, status,
                            time.perf_counter() - started, request.headers.get("content-length", "-"), sent)
