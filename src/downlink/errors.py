"""The one error type of requests, shared by the JSON API, the pages and the sources.

Raise :class:`BadRequest` anywhere a request is refused: the API answers
``{"message": …}`` with its status (``downlink.api.errors.install``), a page shows
the message inside itself (``downlink.web.views.View``) or, for a browser
asking for an unknown page, an error page (``downlink.web.routes``).
"""

from __future__ import annotations


class BadRequest(Exception):
    """A request refused, with the message the client sees and a 4xx status."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
