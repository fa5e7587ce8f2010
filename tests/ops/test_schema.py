"""The OpenAPI schema validates, documents every ``/api/`` route, and its UI needs no CDN."""

import re
from pathlib import Path

import pytest
import yaml
from django.core.management import call_command
from django.urls import URLPattern, URLResolver, get_resolver

pytestmark = pytest.mark.django_db


def _api_routes() -> set[str]:
    """Every ``/api/`` route of the URL resolver, as OpenAPI paths (``{room_id}``)."""
    found: set[str] = set()

    def walk(patterns: list, prefix: str) -> None:
        for p in patterns:
            route = prefix + str(p.pattern)
            if isinstance(p, URLResolver):
                walk(p.url_patterns, route)
            elif isinstance(p, URLPattern) and route.startswith("api/") and "^" not in route:
                found.add("/" + re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", route))

    walk(get_resolver().url_patterns, "")
    # The documents themselves: the OpenAPI schema, its UI, and the WebSocket protocol's
    # AsyncAPI document (tests/realtime/test_asyncapi.py).
    return found - {"/api/schema/", "/api/docs/", "/api/asyncapi.json"}


def test_the_schema_validates_without_warnings_and_lists_every_route(tmp_path: Path):
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    schema = yaml.safe_load(out.read_text())
    assert schema["openapi"].startswith("3.")
    routes = _api_routes()
    assert len(routes) >= 17
    assert set(schema["paths"]) == routes
    assert schema["components"]["securitySchemes"]["bearerAuth"]["scheme"] == "bearer"
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            assert operation.get("tags"), (method, path)
            statuses = set(operation["responses"])
            assert any(s.startswith("2") for s in statuses), (method, path)
            errors = [s for s in statuses if s.startswith("4")]
            assert errors, f"{method} {path} documents no error"
            for status in errors:
                content = operation["responses"][status]["content"]["application/json"]
                assert content["schema"] == {"$ref": "#/components/schemas/Error"}, (path, status)


def test_the_schema_and_the_docs_are_public(client):
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/json")
    assert schema.status_code == 200
    assert "/api/notifications/" in schema.json()["paths"]
    # A bad bearer token does not lock anyone out of the docs (no authentication there).
    assert client.get("/api/schema/", HTTP_AUTHORIZATION="Bearer nope").status_code == 200


def test_swagger_ui_is_served_from_our_static_files(client):
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert "cdn" not in html.lower()
    assets = re.findall(r'(?:src|href)="(/static/drf_spectacular_sidecar/[^"]+)"', html)
    assert any(a.endswith("swagger-ui-bundle.js") for a in assets), assets
    for asset in assets:
        response = client.get(asset)
        assert response.status_code == 200, asset
        b"".join(response.streaming_content) if response.streaming else response.content
