"""``/device/v1/``: the HTTPS device API (``docs/device-protocol.md``). Paths are accepted
with or without a trailing slash: firmware HTTP clients rarely follow a redirect of a POST."""

from __future__ import annotations

from django.urls import re_path

from . import device_views as views
from .models_uplink import UplinkKind

app_name = "device_api"

urlpatterns = [
    re_path(r"^enroll/?$", views.EnrollView.as_view(), name="enroll"),
    re_path(r"^certificate/renew/?$", views.RenewView.as_view(), name="renew"),
    re_path(r"^config/?$", views.ConfigView.as_view(), name="config"),
    *(
        re_path(rf"^{kind}/?$", views.UploadView.as_view(kind=kind), name=kind)
        for kind in UplinkKind.values
    ),
]
