"""Read-your-writes with a read replica: the ``downlink_lsn`` cookie (pure ASGI).

Installed only when ``DATABASE_READ_URL`` is set. For each HTTP request it sets the
request's :class:`~downlink.store.replica.Freshness` from the cookie a previous write
handed back; when the request writes (``Store.admin_write``), the answer sets the
cookie to the primary's WAL position after that write, so the page a POST redirects to
is read from the replica only once the replica has replayed it
(:mod:`downlink.store.replica`).
"""

from __future__ import annotations

from http.cookies import SimpleCookie

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from downlink.store.replica import COOKIE, COOKIE_MAX_AGE_S, FRESHNESS, Freshness, parse_lsn


def _cookie_lsn(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"cookie":
            jar: SimpleCookie = SimpleCookie()
            try:
                jar.load(value.decode("latin-1"))
            except Exception:  # noqa: BLE001 - an unreadable cookie header asks for nothing
                return None
            morsel = jar.get(COOKIE)
            if morsel is not None:
                return parse_lsn(morsel.value)
    return None


class FreshReads:
    """Sets each request's freshness; hands a write's WAL position back in a cookie."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        fresh = Freshness(need=_cookie_lsn(scope))
        token = FRESHNESS.set(fresh)

        async def send_with_cookie(message: Message) -> None:
            if message["type"] == "http.response.start" and fresh.wrote is not None:
                cookie = (
                    f"{COOKIE}={fresh.wrote}; Max-Age={COOKIE_MAX_AGE_S}; Path=/; "
                    "HttpOnly; SameSite=Lax"
                )
                headers = [*message.get("headers", ()), (b"set-cookie", cookie.encode())]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_cookie)
        finally:
            FRESHNESS.reset(token)
