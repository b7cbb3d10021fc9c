"""One declaration per view: the HTML page, its JSON twin and its CSV twin.

The core's pages, the sources' pages and the plug-in views are all :class:`View`\\ s:

* ``GET <path>`` renders ``template`` with the navigation bar, ``data`` and ``form``
  (the query parameters, so the form keeps what was typed); a refusal
  (:class:`~downlink.errors.BadRequest`) is shown inside the page with its status;
* ``GET <path>.json`` answers ``data`` as it is (refusals: ``{"message": …}``);
* ``GET <path>.csv`` (when the view has a :class:`Csv`) answers its table as a CSV
  download, refusals as JSON like the twin's.

``data(request)`` is the one function behind the three; a path may hold parameters
(``/plugins/{name}``), which ``data`` reads from ``request.path_params`` and checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.errors import BadRequest
from downlink.web.rendering import csv_twin, twin, web_of

Data = dict[str, Any]


@dataclass(frozen=True)
class Csv:
    """A view's table as CSV: ``columns`` and ``rows`` from the view's data.

    ``name`` is the download's file name (without ``.csv``), or a function of the
    data; ``columns`` a fixed header or a function of the data (a header that depends
    on it). Either function may refuse with :class:`~downlink.errors.BadRequest`.
    """

    name: str | Callable[[Data], str]
    columns: Sequence[str] | Callable[[Data], Sequence[str]]
    rows: Callable[[Data], Iterable[Sequence[Any]]]


@dataclass(frozen=True)
class View:
    """A page, its JSON twin and optionally its CSV twin, from one ``data`` function.

    ``title`` may name path parameters (``"{name}"``); ``active`` is the navigation
    tab to highlight. ``page(request, data)`` adds to (or overrides) what the template
    gets: ``charts``, ``title``, ``active``, ``template`` or anything else it shows.
    ``fresh`` names the consumers whose derived data the view shows: the page carries
    their freshness mark (how far behind the committed records they are).
    """

    path: str
    title: str
    template: str
    data: Callable[[Request], Awaitable[Data]]
    active: str = ""
    page: Callable[[Request, Data], Mapping[str, Any]] | None = None
    csv: Csv | None = None
    fresh: Sequence[str] = ()

    def install(self, router: APIRouter) -> None:
        """Add the view's routes to ``router`` (twins first: ``{param}`` would match
        ``x.json``)."""
        router.add_api_route(f"{self.path}.json", self.json_twin, methods=["GET"])
        if self.csv is not None:
            router.add_api_route(f"{self.path}.csv", self.csv_twin, methods=["GET"])
        router.add_api_route(self.path, self.html, methods=["GET"])

    async def json_twin(self, request: Request) -> Response:
        """The view's data as JSON."""
        return twin(await self.data(request))

    async def csv_twin(self, request: Request) -> Response:
        """The view's table as CSV."""
        spec = self.csv
        if spec is None:  # install() adds this route only for views with a table
            raise BadRequest("this view has no CSV twin", status=404)
        data = await self.data(request)
        name = spec.name(data) if callable(spec.name) else spec.name
        columns = spec.columns(data) if callable(spec.columns) else spec.columns
        return csv_twin(name, columns, spec.rows(data))

    async def html(self, request: Request) -> Response:
        """The page; a refusal is shown inside it, with the refusal's status."""
        form = dict(request.query_params)
        title = self.title.format(**request.path_params)
        try:
            data = await self.data(request)
        except BadRequest as exc:
            return web_of(request).page(
                self.template,
                title=title,
                active=self.active,
                status=exc.status,
                error=exc.message,
                form=form,
                has_csv=self.csv is not None,
            )
        context: dict[str, Any] = {
            "title": title,
            "active": self.active,
            "form": form,
            "has_csv": self.csv is not None,  # the page links its CSV twin
        }
        if self.page is not None:
            context.update(self.page(request, data))
        template = str(context.pop("template", self.template))
        return web_of(request).page(template, data=data, **context)


def router_of(views: Sequence[View]) -> APIRouter:
    """A router serving ``views`` (kept out of the OpenAPI document: pages, not API)."""
    router = APIRouter(include_in_schema=False)
    for view in views:
        view.install(router)
    return router
