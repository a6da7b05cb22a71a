"""Portal pages for bulk onboarding and jobs: upload a file, follow a job's progress live, read
its log, cancel it.

A job page's bar listens on the live websocket (``job.progress`` messages of the job's
organization) and polls the API every two seconds as a fallback; each update also fetches the
log lines written since the last one shown (``GET /api/v1/jobs/{id}/log/?after=``). An import
has its own page (``imports:detail``); any other job kind (a bulk transition) has the generic
one (``imports:job``). The cancel button (``jobs.job_cancel``) shows to those who may start
that kind of job, while the job is queued or running.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.portal import organization_for, require_perm
from apps.core.models import Job, JobStatus

from . import imports, jobs, services

RECENT = 20
LOG_LINES = 500  # the latest lines a page shows at first (the API serves them all)


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
        **job_context(request, job),
    }
    return render(request, "devices/imports_detail.html", context)


def _visible_job(request: HttpRequest, job_id: uuid.UUID) -> Job:
    actor = request.actor  # type: ignore[attr-defined]
    job = Job.objects.for_actor(actor, "view").select_related("organization")
    found: Job | None = job.filter(pk=job_id).first()
    if found is None:
        raise Http404("No such job.")
    return found


def _page_url(job: Job) -> str:
    name = "imports:detail" if job.kind == imports.KIND else "imports:job"
    return reverse(name, kwargs={"job_id": job.pk})


def job_context(request: HttpRequest, job: Job) -> dict[str, Any]:
    """What every job page shows besides its progress: the latest log lines and the cancel
    button (for whoever may start that kind of job, while it is queued or running)."""
    actor = request.actor  # type: ignore[attr-defined]
    lines = list(jobs.job_lines(job=job).order_by("-id")[:LOG_LINES])[::-1]
    permission = jobs.start_permission(job)
    may_cancel = permission is not None and actor.has_perm(permission, job.organization.path)
    stopped = job.status != JobStatus.CANCELLED or job.finished_at is not None
    return {
        "lines": lines,
        "last_line_id": lines[-1].pk if lines else 0,
        "log_url": reverse("v1:job-log", kwargs={"pk": job.pk}),
        "cancel_url": reverse("imports:cancel", kwargs={"job_id": job.pk}),
        "can_cancel": may_cancel and job.status in jobs.ACTIVE,
        "ended": job.status in jobs.FINISHED and stopped,
    }


@login_required
def job_detail(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Any job's page (imports have their own, with the rejected rows)."""
    job = _visible_job(request, job_id)
    if job.kind == imports.KIND:
        return redirect("imports:detail", job_id=job.pk)
    organization = organization_for(request, job.organization_id, "job.view")
    title = job.kind
    if job.kind == services.BULK_KIND:
        title = f"Bulk transition: {job.params.get('transition', '')}"
    context = {
        "organization": organization,
        "job": job,
        "title": title,
        "api_url": reverse("v1:job-detail", kwargs={"pk": job.pk}),
        **job_context(request, job),
    }
    return render(request, "devices/job_detail.html", context)


@login_required
@require_POST
def job_cancel(request: HttpRequest, job_id: uuid.UUID) -> HttpResponse:
    """Cancel the job (403 without the permission to start it), back to its page."""
    job = _visible_job(request, job_id)
    try:
        job = jobs.job_cancel(actor=request.actor, job=job)  # type: ignore[attr-defined]
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
    else:
        stopping = "" if job.finished_at else ": it stops after the chunk in progress"
        messages.success(request, f"Job cancelled{stopping}.")
    return redirect(_page_url(job))
