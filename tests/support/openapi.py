"""Validate HTTP responses against the AssemblyAI OpenAPI spec (the wire contract).

Usage::

    from tests.support.openapi import validate_response
    validate_response("getTranscript", resp)            # by operationId
    validate_response("/v2/transcript/{transcript_id}", resp, method="get")

JSON bodies are checked against the operation's response schema for the status code
(``$ref`` resolved with ``referencing``, validated with ``OAS31Validator``). Statuses whose spec
entry has no JSON content (503, 504) must simply not claim to be valid JSON errors; the helper
checks that the status is documented for the operation. An undocumented status fails, unless
``extra_status_ref`` names a ``components/responses`` entry to validate against instead (e.g.
403 ``CannotAccessUploadedFile`` on createTranscript, which the spec documents only on upload).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import httpx
import yaml
from openapi_schema_validator import OAS31Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.support.reference import assemblyai

_URI = "urn:assemblyai-openapi"


@functools.cache
def spec() -> dict[str, Any]:
    with assemblyai("openapi.yml").open() as fh:
        return yaml.safe_load(fh)


@functools.cache
def _registry() -> Registry:
    resource = Resource.from_contents(spec(), default_specification=DRAFT202012)
    return Registry().with_resource(_URI, resource)


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        ref = node["$ref"]
        node = _registry().resolver(base_uri=_URI).lookup(f"{_URI}{ref}").contents
    return node


def operation(op: str, method: str | None = None) -> dict[str, Any]:
    """An operation by operationId, or by path template plus method."""
    for path, item in spec()["paths"].items():
        for m, body in item.items():
            if not isinstance(body, dict):
                continue
            if body.get("operationId") == op or (path == op and m == (method or "").lower()):
                return body
    raise KeyError(f"no operation {op!r} {method or ''}")


def response_spec(op: str, status: int, method: str | None = None) -> dict[str, Any] | None:
    responses = operation(op, method)["responses"]
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    return _resolve(entry) if entry is not None else None


def validate_json(schema: dict[str, Any], instance: Any) -> None:
    # $refs in the schema are absolute (urn:...#/...), so they resolve through the registry.
    validator = OAS31Validator(schema, registry=_registry())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        lines = [f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}" for e in errors]
        raise AssertionError("response does not match the spec:\n" + "\n".join(lines[:20]))


def schema_for(name: str) -> dict[str, Any]:
    """A ``components/schemas`` entry whose nested $refs resolve against the spec."""
    return {"$ref": f"{_URI}#/components/schemas/{name}"}


def validate_response(
    op: str,
    resp: httpx.Response,
    *,
    method: str | None = None,
    extra_status_ref: str | None = None,
) -> Any:
    """Assert ``resp`` matches the spec for ``op``; return the parsed JSON body (or None)."""
    entry = response_spec(op, resp.status_code, method)
    if entry is None and extra_status_ref is not None:
        entry = _resolve({"$ref": f"#/components/responses/{extra_status_ref}"})
    assert entry is not None, f"status {resp.status_code} is not documented for {op}"
    content = entry.get("content")
    ctype = resp.headers.get("content-type", "").split(";")[0].strip()
    if not content:
        # 503/504 carry no schema: clients must cope with any body (ours is HTML).
        return None
    assert ctype in content, (
        f"{op} {resp.status_code}: content-type {ctype!r} not in {list(content)}"
    )
    media = content[ctype]
    if ctype != "application/json":
        assert isinstance(resp.text, str)
        return None
    body = json.loads(resp.content)
    schema = media.get("schema", {})
    if "$ref" in schema:
        schema = {"$ref": f"{_URI}{schema['$ref']}"}
    validate_json(schema, body)
    if resp.status_code == 429:
        assert resp.headers.get("retry-after", "").isdigit(), "429 needs integer Retry-After"
    return body
