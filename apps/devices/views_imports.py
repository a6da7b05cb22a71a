"""Portal pages for bulk onboarding: upload a file, follow the job's progress live.

The job page's bar listens on the live websocket (``job.progress`` messages of the job's
organization) and polls the API every two seconds as a fallback.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods

from apps.accounts.portal import organization_for, require_perm
from apps.core.models import Job

from . import imports

RECENT = 20


class ImportForm(forms.Form):
    file = forms.FileField(
        label="CSV or JSON file",
        help_text="Columns: serial, profile, profile_version, name, tags (a;b), attributes "
        "(JSON) or attr.&lt;name&gt;, latitude, longitude, state (escrow, active, discovered).",
    )


def _jobs(request: HttpRequest) -> Any:
    actor = request.actor  # type: ignore[attr-defined]
    return Job.objects.for_actor(actor, "view").filter(kind=imports.KIND)


@login_required
@require_http_methods(["GET", "POST"])
def import_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    """Recent imports of the organization, and the upload form for those who may add devices."""
    organization = organization_for(request, organization_id, "job.view")
    actor = request.actor  # type: ignore[attr-defined]
    can_add = actor.has_perm("device.add", organization.path)
    form = ImportForm()
    if request.method == "POST":
        require_perm(actor, "device.add", organization)
        form = ImportForm(request.POST, request.FILES)
        if form.is_valid():
            try:
                job = imports.import_start(
                    actor=actor, organization=organization, upload=form.cleaned_data["file"]
                )
            except ValidationError as error:
                form.add_error("file", error.message_dict.get("file", error.messages))
            else:
                return redirect("imports:detail", job_id=job.pk)
    jobs = _jobs(request).filter(organization=organization).order_by("-created_at")[:RECENT]
    context = {"organization": organization, "form": form, "can_add": can_add, "jobs": jobs}
    return render(request, "devices/imports.html", context, status=400 if form.errors else 200)


@login_required
def import_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    job = _jobs(request).select_related("organization").filter(pk=job_id).first()
    if job is None:
        raise Http404("No such import.")
    organization = organization_for(request, job.organization_id, "job.view")
    context = {
        "organization": organization,
        "job": job,
        "api_url": reverse("v1:device-import-detail", kwargs={"pk": job.pk}),
        "rejected_url": reverse("v1:device-import-rejected", kwargs={"pk": job.pk}),
    }
    return render(request, "devices/imports_detail.html", context)
