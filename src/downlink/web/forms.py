"""Form posts from the UI: same-origin check and safe redirects."""

from __future__ import annotations

from urllib.parse import urlsplit

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse

from downlink.api.errors import BadRequest


async def same_origin_form(request: Request) -> FormData:
    """Return the posted form, refusing posts another site's page made (403).

    Browsers send ``Origin`` on cross-site form posts; there is no login to forge, but
    a page elsewhere must still not be able to edit the blacklist through a visitor.
    """
    origin = request.headers.get("origin")
    if origin and origin != "null" and urlsplit(origin).netloc != request.headers.get("host"):
        raise BadRequest("cross-origin form posts are refused", status=403)
    if request.headers.get("sec-fetch-site") == "cross-site":
        raise BadRequest("cross-origin form posts are refused", status=403)
    return await request.form()


def redirect_back(target: str | None, default: str) -> RedirectResponse:
    """Redirect (303) to a local path only; anything else goes to ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = default
    return RedirectResponse(target, status_code=303)
