"""The HTTP API's routes as template.yaml declares them: ApiFunction's Api events, read through the local stack's
template model (the view the local API Gateway routes by). tests/static/test_api_routes.py proves that they are the
routes of functions/api/app.py, so tests that must cover every route derive their lists from here."""

from __future__ import annotations

from pathlib import Path

from local_stack.template_model import ApiRoute, TemplateModel

TEMPLATE = Path(__file__).resolve().parents[2] / "template.yaml"
API_FUNCTION = "ApiFunction"
ANY_METHOD = "ANY"
# A route of the API that the OpenAPI document does not describe (it is the document).
OPENAPI_DOCUMENT = "/openapi.json"


def api_events(model: TemplateModel | None = None) -> tuple[ApiRoute, ...]:
    """Every Api event of ApiFunction in `model` (default: template.yaml, its one required parameter filled in)."""
    if model is None:
        model = TemplateModel(TEMPLATE, stack_name="api-routes", parameter_overrides={"ClusterName": "api-routes"})
    return model.functions[API_FUNCTION].api_routes


def operations(model: TemplateModel | None = None) -> set[tuple[str, str]]:
    """(METHOD, /path/{param}) of every event with a specific method: what the API serves, not the ANY fallbacks."""
    return {(event.method, event.path) for event in api_events(model) if event.method != ANY_METHOD}


def documented_operations(model: TemplateModel | None = None) -> set[tuple[str, str]]:
    """The operations that the API's OpenAPI document describes: all but the document's own."""
    return {(method, path) for method, path in operations(model) if path != OPENAPI_DOCUMENT}
