"""Cross-site request forgery: which browser form posts come from another site.

There is no login to forge, but a page elsewhere must not be able to make a visitor's
browser edit the blacklist or queue jobs. Browsers say where a request comes from in
two headers that a page cannot set:

* ``Sec-Fetch-Site`` (every current browser): only ``same-origin`` and ``none`` (the
  user's own action, such as a bookmark) pass. When it is there it decides, because a
  same-origin post may carry ``Origin: null`` (``Referrer-Policy: no-referrer``).
* ``Origin`` (older browsers): it must name this server. ``null`` is an opaque origin —
  a sandboxed frame, a ``data:`` or ``file:`` page, a cross-site redirect — and never
  this server, so it is refused.

A request with neither header does not come from a browser page (curl, scripts): it
passes, as it could have sent anything anyway.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

_SAME_SITE_OK = frozenset(("same-origin", "none"))


def cross_site_reason(headers: Mapping[str, str]) -> str | None:
    """Say why a state-changing browser request must be refused, or None when it may pass.

    ``headers`` are the request's headers with lower-case names (a Starlette ``Headers``
    object will do); ``host`` is compared with the ``Origin``'s host and port.
    """
    fetch_site = headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site.strip().lower() in _SAME_SITE_OK:
            return None
        return f"cross-origin form posts are refused (Sec-Fetch-Site: {fetch_site[:40]})"
    origin = headers.get("origin")
    if origin is None:
        return None
    if origin.strip().lower() == "null":
        return "cross-origin form posts are refused (Origin: null)"
    host = headers.get("host", "")
    try:
        netloc = urlsplit(origin.strip()).netloc
    except ValueError:
        netloc = ""
    if not netloc or netloc.lower() != host.lower():
        return "cross-origin form posts are refused (Origin is another site)"
    return None
