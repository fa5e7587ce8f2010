"""HTTP routes: the web pages, ``/api/`` (docs/protocol.md), admin, health checks and metrics."""

from django.contrib import admin
from django.urls import include, path, re_path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from realtime import views as realtime_views

from . import errors, health, metrics

urlpatterns = [
    path("", include("accounts.urls")),
    path("", include("notifications.web_urls")),
    path("api/", include("accounts.api_urls")),
    path("api/", include("notifications.urls")),
    path("api/", include("chat.urls")),
    # Public (SPECTACULAR_SETTINGS["SERVE_PERMISSIONS"]): the schema and its Swagger UI, whose
    # JavaScript and CSS come from drf-spectacular-sidecar's static files, not a CDN.
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="swagger-ui"),
    path("api/asyncapi.json", realtime_views.asyncapi, name="asyncapi"),
    re_path(r"^api/", errors.api_not_found),  # JSON 404 under /api/, any method, in DEBUG too
    path("admin/", admin.site.urls),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics_view, name="metrics"),
]

handler400 = "config.errors.bad_request"
handler404 = "config.errors.not_found"
handler500 = "config.errors.server_error"
