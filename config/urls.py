from __future__ import annotations

from allauth.account.decorators import secure_admin_login
from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularRedocView, SpectacularSwaggerView

from apps.core.api.exceptions import api_error_view

api_v1 = [
    path("", include("apps.accounts.api.urls")),
    path("", include("apps.core.api.urls")),
    path("", include("apps.profiles.api.urls")),
    path("", include("apps.profiles.api.urls_templates")),
    path("", include("apps.devices.api.urls_devices")),
    path("", include("apps.devices.api.urls_groups")),
    path("", include("apps.devices.api.urls_imports")),
    path("", include("apps.devices.api.urls_pki")),
    path("", include("apps.devices.api.urls_enrollment")),
    path("", include("apps.telemetry.api.urls")),
    path("", include("apps.commands.api.urls")),
    path("", include("apps.configuration.api.urls")),
    path("", include("apps.changes.api.urls")),
]

# Admin sign-in goes through allauth (email verification, rate limits, MFA); signed-in
# non-staff users get 403.
admin.site.login = secure_admin_login(admin.site.login)  # type: ignore[method-assign]
admin.site.site_header = "Fleetops administration"
admin.site.site_title = "Fleetops admin"
admin.site.index_title = "Platform back office"

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("allauth.urls")),
    path("api/v1/", include((api_v1, "api"), namespace="v1")),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("api/redoc/", SpectacularRedocView.as_view(url_name="schema"), name="api-redoc"),
    path("device/v1/", include("apps.devices.device_urls")),
    path("device/v1/", include("apps.commands.device_urls")),
    path("device/v1/", include("apps.configuration.device_urls")),
    path("", include("apps.core.urls")),
    path("", include(("apps.accounts.urls", "portal"), namespace="portal")),
    path("", include(("apps.profiles.urls", "profiles"), namespace="profiles")),
    path("", include(("apps.devices.urls_fleet", "fleet"), namespace="fleet")),
    path("", include(("apps.devices.urls_groups", "groups"), namespace="groups")),
    path("", include(("apps.devices.urls_imports", "imports"), namespace="imports")),
    path("", include(("apps.devices.urls_enrollment", "enrollment"), namespace="enrollment")),
    path("", include(("apps.telemetry.urls_notify", "notify"), namespace="notify")),
    path("", include(("apps.telemetry.urls_alerts", "alerts"), namespace="alerts")),
    path("", include(("apps.telemetry.urls", "telemetry"), namespace="telemetry")),
    path("", include(("apps.telemetry.urls_analytics", "analytics"), namespace="analytics")),
    path("", include(("apps.commands.urls", "commands"), namespace="commands")),
    path("", include(("apps.configuration.urls", "configuration"), namespace="configuration")),
    path("", include(("apps.changes.urls", "changes"), namespace="changes")),
]

handler404 = "config.urls.not_found"
handler500 = "config.urls.server_error"


def not_found(request, exception=None):  # type: ignore[no-untyped-def]
    if request.path.startswith(("/api/", "/device/")):
        return api_error_view(404)(request, exception)
    from django.views.defaults import page_not_found

    return page_not_found(request, exception)


def server_error(request):  # type: ignore[no-untyped-def]
    if request.path.startswith(("/api/", "/device/")):
        return api_error_view(500)(request)
    from django.views.defaults import server_error as default

    return default(request)
