"""Form posts from the UI: same-origin check and safe redirects."""

from __future__ import annotations

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse

from downlink.errors import BadRequest
from downlink.security.csrf import cross_site_reason


async def same_origin_form(request: Request) -> FormData:
    """Return the posted form, refusing posts another site's page made (403).

    The rule is :func:`downlink.security.csrf.cross_site_reason`.
    """
    reason = cross_site_reason(request.headers)
    if reason is not None:
        raise BadRequest(reason, status=403)
    return await request.form()


def redirect_back(target: str | None, default: str) -> RedirectResponse:
    """Redirect (303) to a local path only; anything else goes to ``default``."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        target = default
    return RedirectResponse(target, status_code=303)
