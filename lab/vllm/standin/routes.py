"""The routes the API server registers (launchers/api_server/routers.py), the API key's guarded prefixes,
FastAPI's documentation pages, and the served model as start-up configured it."""

from __future__ import annotations

from dataclasses import dataclass

from .releases import Release

# FastAPI's pages (openapi_url, docs_url, redoc_url and the OAuth2 redirect of Swagger UI): same titles and
# references, shorter pages.
SWAGGER_CDN = "https://cdn.jsdelivr.net/npm/swagger-ui-dist@5"
DOCS_PAGES = {
    "/docs": ("FastAPI - Swagger UI",
              f'<link type="text/css" rel="stylesheet" href="{SWAGGER_CDN}/swagger-ui.css">',
              f'<div id="swagger-ui"></div><script src="{SWAGGER_CDN}/swagger-ui-bundle.js"></script><script>'
              "SwaggerUIBundle({url: '/openapi.json', dom_id: '#swagger-ui', "
              "oauth2RedirectUrl: window.location.origin + '/docs/oauth2-redirect'})</script>"),
    "/docs/oauth2-redirect": ("Swagger UI: OAuth2 Redirect", "",
                              "<script>window.opener.swaggerUIRedirectOauth2 && window.close()</script>"),
    "/redoc": ("FastAPI - ReDoc", "",
               '<redoc spec-url="/openapi.json"></redoc>'
               '<script src="https://cdn.jsdelivr.net/npm/redoc@2/bundles/redoc.standalone.js"></script>'),
}

GUARDED_PREFIXES = ("/v1", "/v2", "/inference", "/cohere")  # serve/middleware/authenticate.py
# The routes of launchers/api_server/routers.py for a generate model with the default flags, in the app's order, less
# the guarded ones the stand-in does not simulate (README). Only the /v1 ones need the API key.
ROUTES = {"/load": ("GET",), "/version": ("GET",), "/kv_event_sources": ("GET",), "/health": ("GET",),
          "/metrics": ("GET",), "/tokenize": ("POST",), "/detokenize": ("POST",), "/v1/models": ("GET",),
          "/ping": ("GET", "POST"), "/invocations": ("POST",), "/v1/chat/completions": ("POST",),
          "/v1/completions": ("POST",), "/generative_scoring": ("POST",), "/scale_elastic_ep": ("POST",),
          "/is_scaling_elastic_ep": ("POST",)}
# FastAPI's own pages (openapi_url, docs_url, redoc_url), unless --disable-fastapi-docs; --enable-offline-docs drops
# /redoc and points /docs at vLLM's copy of Swagger UI (serve/instrumentator/offline_docs.py).
DOCS_ROUTES = {"/openapi.json": ("GET",), "/docs": ("GET",), "/docs/oauth2-redirect": ("GET",), "/redoc": ("GET",)}


@dataclass
class Deployment:
    """The served model as vLLM configured it at start-up."""
    model: str
    served_names: list[str]
    max_model_len: int
    has_chat_template: bool
    auto_tools: bool
    reasoning_parser: str
    default_chat_template_kwargs: dict
    api_keys: list[str]
    fingerprint: str | None
    garbled: bool
    log_requests: bool
    release: Release
    trust_request_chat_template: bool = False
    tokenizer_mode: str = "deepseek_v32"
    server_load_tracking: bool = False
    docs: str = "online"  # FastAPI's pages: "online", "offline" (--enable-offline-docs) or "none"
    data_parallel_size: int = 1


def served_routes(deployment: Deployment) -> dict[str, tuple[str, ...]]:
    docs = {"online": DOCS_ROUTES, "none": {},
            "offline": {path: methods for path, methods in DOCS_ROUTES.items() if path != "/redoc"}}
    return {**docs[deployment.docs], **ROUTES}


# "Available routes are:" (launchers/launcher.py serve_http): app.routes in order. SageMaker's bootstrap replaces
# GET /ping and POST /invocations, which moves them to the end.
ROUTE_LIST = (("/openapi.json", "GET, HEAD"), ("/docs", "GET, HEAD"), ("/docs/oauth2-redirect", "GET, HEAD"),
              ("/redoc", "GET, HEAD"), ("/load", "GET"), ("/version", "GET"), ("/kv_event_sources", "GET"),
              ("/health", "GET"), ("/metrics", "GET"), ("/tokenize", "POST"), ("/detokenize", "POST"),
              ("/v1/models", "GET"), ("/ping", "POST"), ("/v1/chat/completions", "POST"), ("/v1/completions", "POST"),
              ("/generative_scoring", "POST"), ("/scale_elastic_ep", "POST"), ("/is_scaling_elastic_ep", "POST"),
              ("/ping", "GET"), ("/invocations", "POST"))
