"""The API's routes are declared once, by the resolver's decorators in functions/api/app.py: template.yaml's Api
events of ApiFunction are the same routes (plus the ANY fallbacks), and the 405 answers read the resolver's own table.
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest
from aws_lambda_powertools.event_handler import APIGatewayRestResolver
from aws_lambda_powertools.event_handler.api_gateway import Route

from tests.support.api_routes import ANY_METHOD, OPENAPI_DOCUMENT, api_events, operations

from .tools import REPO_ROOT

pytestmark = pytest.mark.static

APP = REPO_ROOT / "functions" / "api" / "app.py"
# The ANY events that are no route's: they send what no resource has to the function, which answers its JSON 404.
CATCH_ALL_PATHS = {"/", "/{proxy+}"}


@pytest.fixture(scope="module")
def api_app() -> Iterator[ModuleType]:
    """functions/api/app.py, imported by path under a name of its own (Lambda imports it as `app`)."""
    name = "api_function_app"
    spec = importlib.util.spec_from_file_location(name, APP)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]


def template_path(rule: str) -> str:
    """A resolver rule as an API Gateway resource path: /jobs/<jobId> -> /jobs/{jobId}."""
    return re.sub(r"<(\w+)>", r"{\1}", rule)


def concrete_path(rule: str) -> str:
    """A path that `rule` matches: each parameter filled in."""
    return re.sub(r"<\w+>", "0b6f1c9e-3f7a-4c1e-9a53-2a8f6f2b9d10", rule)


def test_template_events_are_the_app_routes(api_app: ModuleType) -> None:
    served = {(route.method, template_path(route.path)) for route in api_app.registered_routes(api_app.app)}
    assert operations() == served


def test_every_route_path_and_the_catch_alls_have_an_any_event(api_app: ModuleType) -> None:
    """API Gateway answers its own 403 for a method a resource lacks: ANY sends it to the function, which says 405."""
    fallbacks = [event.path for event in api_events() if event.method == ANY_METHOD]
    route_paths = {template_path(route.path) for route in api_app.registered_routes(api_app.app)}
    assert sorted(fallbacks) == sorted(route_paths | CATCH_ALL_PATHS)


def test_registered_routes_reads_the_resolvers_table(api_app: ModuleType) -> None:
    """Fails if Powertools stops keeping its routes where registered_routes reads them (private attributes)."""
    resolver = APIGatewayRestResolver()

    @resolver.get("/things/<thingId>")
    def thing(): ...

    @resolver.route("/things", method=["POST", "GET"])
    def things(): ...

    routes = api_app.registered_routes(resolver)
    assert all(isinstance(route, Route) for route in routes)
    assert [(route.method, route.path, route.func) for route in routes] == [
        ("POST", "/things", things),
        ("GET", "/things", things),
        ("GET", "/things/<thingId>", thing),
    ]
    assert [bool(route.rule.match("/things/abc")) for route in routes] == [False, False, True]


def test_the_route_table_is_what_the_openapi_document_describes(api_app: ModuleType) -> None:
    routes = api_app.registered_routes(api_app.app)
    document = json.loads(api_app.app.get_openapi_json_schema())
    documented = {(method.upper(), path) for path, item in document["paths"].items() for method in item}
    assert documented == {(route.method, template_path(route.path)) for route in routes if route.include_in_schema}
    assert [route.path for route in routes if not route.include_in_schema] == [OPENAPI_DOCUMENT]


def test_405_allows_the_methods_of_the_routes_on_that_path(api_app: ModuleType) -> None:
    routes = api_app.registered_routes(api_app.app)
    for rule in {route.path for route in routes}:
        allowed = api_app._allowed_methods(concrete_path(rule))
        assert set(allowed) == {route.method for route in routes if route.path == rule}, rule
        assert list(allowed) == sorted(allowed, key=api_app.METHOD_ORDER.index), rule
    assert api_app._allowed_methods("/jobs/x/y") == ()
    assert api_app._allowed_methods("/") == ()
