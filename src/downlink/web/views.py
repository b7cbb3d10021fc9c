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
A parameter named in ``path_types`` (``{"guilty_id": RecordId}``) is checked by FastAPI
before ``data`` runs, as any route's typed parameter: a malformed one is the app's 400
(a page for browsers, ``{"message": …}`` otherwise), and ``request.path_params`` holds
its converted value (an ``int``).

Every page's template gets ``json_href``, the JSON twin of the page as asked (same
query), beside ``form`` and ``has_csv`` (``_macros.html: json_link`` derives the CSV
link from it). ``page(request, data)`` may be a coroutine function: a page's own reads
beyond the twin's data (the "never guilty" list's last additions).
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from downlink.errors import BadRequest
from downlink.web.rendering import csv_twin, freshness, twin, web_of

Data = dict[str, Any]
Extra = Mapping[str, Any]
Endpoint = Callable[[Request], Awaitable[Response]]


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
    tab to highlight. ``page(request, data)`` (plain or ``async``) adds to (or
    overrides) what the template gets: ``charts``, ``title``, ``active``, ``template``,
    ``form``, ``json_href`` or anything else it shows. ``fresh`` names the consumers
    whose derived data the view shows: the page carries their freshness mark (how far
    behind the committed records they are). ``path_types`` types path parameters
    (name to annotation, such as :data:`downlink.params.RecordId`), checked before
    ``data`` runs.
    """

    path: str
    title: str
    template: str
    data: Callable[[Request], Awaitable[Data]]
    active: str = ""
    page: Callable[[Request, Data], Extra | Awaitable[Extra]] | None = None
    csv: Csv | None = None
    fresh: Sequence[str] = ()
    path_types: Mapping[str, Any] = field(default_factory=dict)

    def install(self, router: APIRouter) -> None:
        """Add the view's routes to ``router`` (twins first: ``{param}`` would match
        ``x.json``)."""
        router.add_api_route(f"{self.path}.json", self._typed(self.json_twin), methods=["GET"])
        if self.csv is not None:
            router.add_api_route(f"{self.path}.csv", self._typed(self.csv_twin), methods=["GET"])
        router.add_api_route(self.path, self._typed(self.html), methods=["GET"])

    def _typed(self, answer: Endpoint) -> Endpoint:
        """``answer`` as an endpoint whose signature declares ``path_types``, so that
        FastAPI checks them; their converted values replace the text in
        ``request.path_params``."""
        if not self.path_types:
            return answer

        async def endpoint(request: Request, **checked: Any) -> Response:
            request.scope["path_params"] = {**request.path_params, **checked}
            return await answer(request)

        kind = inspect.Parameter.KEYWORD_ONLY
        endpoint.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter("request", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                                  annotation=Request),
                *(inspect.Parameter(n, kind, annotation=t) for n, t in self.path_types.items()),
            ]
        )
        return endpoint

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
        context: dict[str, Any] = {
            "title": self.title.format(**request.path_params),
            "active": self.active,
            "form": form,
            "json_href": f"{request.url.path}.json?{urlencode(form)}",
            "has_csv": self.csv is not None,  # the page links its CSV twin
        }
        try:
            data = await self.data(request)
        except BadRequest as exc:
            return web_of(request).page(
                self.template, status=exc.status, error=exc.message, **context
            )
        if self.fresh:
            context["fresh"] = freshness(request, *self.fresh)
        if self.page is not None:
            extra = self.page(request, data)
            if inspect.isawaitable(extra):
                extra = await extra
            context.update(extra)
        template = str(context.pop("template", self.template))
        return web_of(request).page(template, data=data, **context)


def router_of(views: Sequence[View]) -> APIRouter:
    """A router serving ``views`` (kept out of the OpenAPI document: pages, not API)."""
    router = APIRouter(include_in_schema=False)
    for view in views:
        view.install(router)
    return router
