"""gateway/admin/openapi.yaml is a valid OpenAPI 3 document and lists exactly the routes
the application serves (and their methods), so neither can drift from the other."""

from __future__ import annotations

from typing import cast

import yaml
from openapi_spec_validator import validate

from gateway.admin.auth import needs_token
from gateway.admin.context import AdminContext
from gateway.admin.server import OPENAPI_PATH, build_app
from gateway.admin.settings import AdminConfig

_METHODS = {"get", "post", "put", "patch", "delete", "head", "options"}


def documented() -> set[tuple[str, str]]:
    doc = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    return {(method.upper(), path) for path, item in doc["paths"].items()
            for method in item if method in _METHODS}


def is_console(path: str) -> bool:
    """The operator console's HTML pages (gateway.console) are for browsers, not the API:
    not in openapi.yaml; their session guard is tested in tests/integration/test_console_*."""
    return path == "/console" or path.startswith("/console/")


def served() -> set[tuple[str, str]]:
    app = build_app(cast(AdminContext, None), AdminConfig())  # the route table needs no gateway
    return {(route.method, route.resource.canonical) for route in app.router.routes()
            if route.resource is not None and not is_console(route.resource.canonical)}


def test_document_is_valid_openapi_3() -> None:
    validate(yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8")))


def test_every_route_is_documented_and_every_documented_route_exists() -> None:
    assert served() - documented() == set(), "served but not in openapi.yaml"
    assert documented() - served() == set(), "in openapi.yaml but not served"
    assert ("POST", "/unsubscribe") in served()


def test_public_routes_are_marked_public_in_the_document() -> None:
    doc = yaml.safe_load(OPENAPI_PATH.read_text(encoding="utf-8"))
    public = {(m.upper(), p) for p, item in doc["paths"].items() for m, op in item.items()
              if m in _METHODS and op.get("security") == []}
    app = build_app(cast(AdminContext, None), AdminConfig())
    named_public = {(r.method, r.resource.canonical) for r in app.router.routes()
                    if r.resource is not None and not needs_token(r.name or "", True)
                    and not is_console(r.resource.canonical)}
    # Every route public on loopback says so in the document (/metrics with a note).
    assert public == named_public
    assert ("GET", "/metrics") in public and ("GET", "/healthz") in public


def test_metrics_need_the_token_off_loopback() -> None:
    assert needs_token("local:metrics", loopback=False)
    assert not needs_token("local:metrics", loopback=True)
    assert not needs_token("public:healthz", loopback=False)
    assert needs_token("queue.list", loopback=True)
