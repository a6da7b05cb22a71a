from __future__ import annotations

from django.urls import path

from . import views_imports

urlpatterns = [
    path("o/<uuid:organization_id>/imports/", views_imports.import_list, name="list"),
    path("imports/<uuid:job_id>/", views_imports.import_detail, name="detail"),
    path("jobs/<uuid:job_id>/", views_imports.job_detail, name="job"),
    path("jobs/<uuid:job_id>/cancel/", views_imports.job_cancel, name="cancel"),
]
