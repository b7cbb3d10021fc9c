"""The OpenAPI document: what FastAPI generates, made to say what the server really does.

FastAPI documents a 422 with its own error shape that this server never sends (every
refusal is ``{"message": ...}``, :mod:`downlink.api.errors`), and knows nothing of the
answers the middleware gives before a route runs. :func:`install` rewrites each
operation once, when the document is first asked for:

* FastAPI's 422 goes (a route declaring its own 422, as OONI's API does, keeps it);
  400 (bad parameter or body) is declared wherever an operation takes input;
* 401 and 429 wherever an API token may be required and the rate limit applies (every
  path but the always-open ones of ``security/paths.py``), 413 and 408 wherever a
  body is read, 503 wherever the database is read or written;
* every error answer has the ``Message`` schema.

An operation declares its own other answers (404, 302, ...) in its route. The Clear
Linux collector, plain ASGI routes FastAPI does not see, is added from ``extra_paths``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI

from downlink.security.paths import is_open

MESSAGE_SCHEMA: dict[str, Any] = {
    "title": "Message",
    "type": "object",
    "properties": {"message": {"type": "string", "description": "What went wrong."}},
    "required": ["message"],
}
MESSAGE_REF = {"$ref": "#/components/schemas/Message"}

_WHY = {
    "400": "A parameter or the body breaks a rule; the message names it.",
    "401": "A valid API token is required (when DOWNLINK_API_TOKENS is set).",
    "404": "Nothing is stored under that id or name.",
    "408": "The body did not arrive within DOWNLINK_CLIENT_TIMEOUT.",
    "413": "The body is larger than DOWNLINK_MAX_BODY_BYTES.",
    "429": "Over the rate limit (when DOWNLINK_RATE_LIMIT is set); see Retry-After.",
    "503": "The database is unavailable or busy; retry after Retry-After.",
}
# Operations that touch neither the database nor a request body.
_NO_DATABASE = frozenset(("/-/version", "/-/settings", "/-/health"))
_WITH_BODY = frozenset(("post", "put", "patch"))


def message_response(description: str) -> dict[str, Any]:
    """An error answer with the ``Message`` schema."""
    return {"description": description, "content": {"application/json": {"schema": MESSAGE_REF}}}


def _takes_input(operation: dict[str, Any]) -> bool:
    return bool(operation.get("parameters")) or "requestBody" in operation


def _declare_errors(path: str, method: str, operation: dict[str, Any]) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    generated = responses.get("422", {}).get("content", {}).get("application/json", {})
    if "HTTPValidationError" in str(generated.get("schema", "")):
        responses.pop("422")  # FastAPI's, never sent; a route's own 422 stays
    wanted = []
    if _takes_input(operation):
        wanted.append("400")
    if not is_open(path):
        wanted += ["401", "429"]
    if method in _WITH_BODY:
        wanted += ["408", "413"]
    if path not in _NO_DATABASE:
        wanted.append("503")
    for status in wanted:
        responses.setdefault(status, message_response(_WHY[status]))
    for status, answer in responses.items():
        if status.startswith(("4", "5")) and "content" not in answer:
            answer["content"] = {"application/json": {"schema": MESSAGE_REF}}


def complete(schema: dict[str, Any], extra_paths: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Return ``schema`` with ``extra_paths`` added and every operation's errors declared."""
    schema["paths"].update(extra_paths)
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    components["Message"] = MESSAGE_SCHEMA
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            if isinstance(operation, dict) and "responses" in operation:
                _declare_errors(path, method, operation)
    return schema


def install(app: FastAPI, extra_paths: Callable[[], dict[str, dict[str, Any]]]) -> None:
    """Serve the completed document at ``/openapi.json`` (built once, then cached)."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = complete(generate(), extra_paths())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
