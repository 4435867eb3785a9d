"""gateway/api/openapi.yaml is a valid OpenAPI 3 document and lists exactly the routes
the API listener serves (and their methods), so neither can drift from the other."""

from __future__ import annotations

import re
from pathlib import Path
from typing import cast

import yaml
from openapi_spec_validator import validate

from gateway.api.server import OPENAPI_PATH, ApiContext, build_app
from gateway.api.settings import ApiConfig

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def documented() -> set[tuple[str, str]]:
    doc = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in _METHODS}


def served() -> set[tuple[str, str]]:
    app = build_app(cast(ApiContext, None), ApiConfig(keys_file=Path("/nonexistent")))
    # aiohttp writes a constrained variable as {name:regex}; the document as {name}.
    return {(route.method, re.sub(r"\{(\w+):[^/]*\}", r"{\1}", route.resource.canonical))
            for route in app.router.routes() if route.resource is not None}


def test_document_is_valid_openapi_3() -> None:
    validate(yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8")))


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert served() - documented() == set(), "served but not in openapi.yaml"
    assert documented() - served() == set(), "in openapi.yaml but not served"
    assert ("POST", "/v1/messages/batch") in served()
