"""What a hostile web page in the user's browser must not do to the room.

A page on another site can make the user's browser send requests to the room on
loopback: by DNS rebinding (its own name resolving to 127.0.0.1, so the browser
treats the room as same-origin) or by cross-site "simple" requests (a form POST,
``fetch`` with ``Content-Type: text/plain``), which reach the server without a
CORS preflight. So:

- **Host allow-list**: a request whose ``Host`` is not one of the room's names
  (loopback by default, ``--allowed-host`` for a lab's proxy) is refused (400):
  a rebound name never matches.
- **Writes** (every method but GET/HEAD/OPTIONS) need the header ``X-Mess-Kedro``,
  which a cross-site page can only send after a preflight the room never grants,
  and are refused when their ``Origin`` is another site (403).
- **Bodies** are counted as they arrive: over the endpoint's budget the request
  is answered 413 at once, whatever ``Content-Length`` claimed (or did not).
- **Headers** over ``max_header_bytes`` in all are answered 431 (h11's own limit
  only stops a request whose headers are still arriving).

Pure ASGI middleware: nothing here reads a body it does not have to.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

WRITE_HEADER = "x-mess-kedro"
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}


def host_name(value: str) -> str:
    """``Host``/``Origin`` authority without port, lower case; ``[::1]:8000`` -> ``::1``."""
    value = value.strip().lower()
    if value.startswith("["):  # IPv6 literal
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


async def _answer(send, status: int, message: str) -> None:
    body = json.dumps({"error": message}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class RoomGuard:
    """Host allow-list, write guard and body budgets in front of the app (see the module docstring).

    ``body_limits``: ``{(method, path suffix): bytes}``; any other request's body may hold
    ``default_body_limit`` bytes.
    """

    def __init__(
        self,
        app,
        *,
        allowed_hosts: Sequence[str] = LOOPBACK_HOSTS,
        body_limits: Mapping[tuple[str, str], int] | None = None,
        default_body_limit: int = 64 * 1024,
        max_header_bytes: int = 16 * 1024,
    ) -> None:
        self.app = app
        self.allowed = {host_name(h) for h in allowed_hosts}
        self.body_limits = dict(body_limits or {})
        self.default_body_limit = int(default_body_limit)
        self.max_header_bytes = int(max_header_bytes)

    def _body_limit(self, method: str, path: str) -> int:
        # By suffix: behind a reverse proxy the path may still carry its sub-path.
        for (wanted, suffix), limit in self.body_limits.items():
            if method == wanted and path.endswith(suffix):
                return int(limit)
        return self.default_body_limit

    def _refusal(self, method: str, headers: Mapping[str, str]) -> tuple[int, str] | None:
        host = host_name(headers.get("host", ""))
        if "*" not in self.allowed and host not in self.allowed:
            return (
                400,
                f"host '{host[:100]}' is not one of this room's names (mess-kedro serve --allowed-host)",
            )
        if method in SAFE_METHODS:
            return None
        origin = headers.get("origin")
        if origin is not None and host_name(urlsplit(origin).netloc) not in self.allowed:
            return 403, "a write from another site's page is refused"
        if WRITE_HEADER not in headers:
            return 403, f"a write needs the header {WRITE_HEADER.title()} (the room's page sends it)"
        return None

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        size = sum(len(k) + len(v) + 4 for k, v in scope["headers"])
        if size > self.max_header_bytes:
            await _answer(
                send, 431, f"request headers of {size} bytes are over the limit of {self.max_header_bytes}"
            )
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        refusal = self._refusal(method, headers)
        if refusal:
            await _answer(send, *refusal)
            return
        limit = self._body_limit(method, scope["path"])
        declared = headers.get("content-length", "")
        if declared.isdigit() and int(declared) > limit:
            await _answer(
                send, 413, f"a request body of {int(declared)} bytes is over the limit of {limit} bytes"
            )
            return
        await self._limited(scope, receive, send, limit)

    async def _limited(self, scope, receive, send, limit: int) -> None:
        """Count the body as it arrives; past ``limit`` answer 413 and tell the app the client left."""
        received = 0
        started = refused = False

        async def counted():
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    refused = True
                    if not started:
                        await _answer(send, 413, f"the request body is over the limit of {limit} bytes")
                    return {"type": "http.disconnect"}
            return message

        async def tracked(message):
            nonlocal started
            if refused:  # the app's own answer to the "disconnect": ours was sent
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted, tracked)
