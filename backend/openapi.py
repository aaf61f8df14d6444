"""The OpenAPI document, made true for every route at once.

FastAPI documents a 200 and its own 422 shape (a list of error objects) per
route; Shipyard answers every error as ``{"detail": "<sentence>"}`` and can
refuse any request before it reaches a route (token, host, origin, body size,
throttle). Rather than repeating that on each route, :func:`install` rewrites
the generated document once: every operation gets the shared error responses
that can really happen to it, and the 422 shape is replaced by the real one.
Routes added later inherit all of this without doing anything.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, Field


class ErrorBody(BaseModel):
    """Every error Shipyard answers."""

    detail: str = Field(description="What went wrong, as a sentence a person can act on.")


ERROR_REF = {"$ref": "#/components/schemas/Error"}

#: status -> description, for errors any operation can get (guards in front of every route).
EVERYWHERE = {
    "401": "Missing or wrong access token.",
    "403": "Refused: a foreign Host or Origin, or a file outside the state directory.",
    "413": "The request body is larger than max_request_body_bytes.",
    "429": "Too many wrong access tokens from this address; see Retry-After.",
    "500": "An unexpected error; the server log has the details.",
    "503": "The server cannot do this now (for example, the disk is full).",
}
#: Errors of operations that name a resource or change state.
ON_RESOURCES = {
    "404": "No such plan or task (or an id that cannot be one).",
    "409": "Not possible in the current state (the sentence says why and what to do).",
}
INVALID = "The request does not validate: the sentence names each wrong field."


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    response: dict[str, Any] = {"description": description, "content": {"application/json": {"schema": ERROR_REF}}}
    if headers:
        response["headers"] = headers
    return response


def document_errors(schema: dict[str, Any]) -> dict[str, Any]:
    """Add the shared error responses to every operation of ``schema`` (in place)."""
    schemas = schema.setdefault("components", {}).setdefault("schemas", {})
    schemas["Error"] = ErrorBody.model_json_schema()
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            if method.startswith("x-") or not isinstance(operation, dict):
                continue
            responses = operation.setdefault("responses", {})
            takes_input = bool(operation.get("parameters") or operation.get("requestBody"))
            if takes_input or "422" in responses:
                responses["422"] = _error(INVALID)
            wanted = dict(EVERYWHERE)
            if "{" in path or method != "get":
                wanted.update(ON_RESOURCES)
            for status, description in wanted.items():
                headers = None
                if status == "429":
                    headers = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
                elif status == "401":
                    headers = {"WWW-Authenticate": {"schema": {"type": "string"}}}
                responses.setdefault(status, _error(description, headers))
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    return schema


def link_created_resources(schema: dict[str, Any]) -> dict[str, Any]:
    """OpenAPI links from each create (``POST /x`` answering 201 with an ``id``) to every
    operation on ``/x/{..._id}``: clients and stateful testers learn that the id a create
    returns is the one those paths take. Generic, so new collections get their links too."""
    paths = schema.get("paths", {})
    for collection, operations in paths.items():
        created = operations.get("post", {}).get("responses", {}).get("201")
        if created is None:
            continue
        links = created.setdefault("links", {})
        prefix = collection.rstrip("/") + "/{"
        for path, targets in paths.items():
            if not path.startswith(prefix):
                continue
            parameter = path[len(prefix):].split("}", 1)[0]
            for operation in targets.values():
                if isinstance(operation, dict) and "operationId" in operation:
                    links[operation["operationId"]] = {
                        "operationId": operation["operationId"],
                        "parameters": {parameter: "$response.body#/id"},
                    }
    return schema


def install(app: FastAPI) -> None:
    """Serve the corrected document at /openapi.json (built once, on first request)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description,
                                 routes=app.routes, tags=app.openapi_tags)
            schema.setdefault("components", {})["securitySchemes"] = {
                "token": {"type": "http", "scheme": "bearer",
                          "description": "The access token 'shipyard serve' printed (the dashboard's "
                          "cookie carries the same)."}}
            schema["security"] = [{"token": []}]
            app.openapi_schema = link_created_resources(document_errors(schema))
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
