"""Portal pages of alerting (namespace ``alerts``): the alerts list with its live count, one
alert with its timeline, the rules list and form, and the device page's open-alerts panel.

Pages that name an organization (``/o/<id>/alerts/``) are 404 outside the actor's view and 403
without the permission there; an alert or a rule is reached by id through ``for_actor`` (404
when unseen). Writes go through ``apps.telemetry.alerting.services`` with the request's actor;
acknowledge / resolve / reopen answer htmx requests with the updated table row.
"""

from __future__ import annotations

import uuid
from typing import Any
from urllib.parse import urlencode

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.models import Organization
from apps.accounts.portal import organization_for
from apps.core.actors import Actor
from apps.core.paging import keyset_page
from apps.devices.access import access_device

from .alerting import selectors, services
from .alerting.rules import summarize
from .choices import SEVERITY_RANK, RuleKind
from .forms_alerts import KIND_FIELDS, AlertFilterForm, AlertNoteForm, AlertRuleForm
from .forms_alerts import apply_rule_errors as _apply_rule_errors
from .models import Alert, AlertRule

PAGE_SIZE = 50
ACTIONS = {
    "acknowledge": services.alert_acknowledge,
    "resolve": services.alert_resolve,
    "reopen": services.alert_reopen,
}
DONE = {"acknowledge": "acknowledged", "resolve": "resolved", "reopen": "reopened"}


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _rows(actor: Actor, alerts: list[Alert]) -> list[dict[str, Any]]:
    return [
        {"alert": alert, "can_change": actor.has_perm("alert.change", alert.organization.path)}
        for alert in alerts
    ]


def _page(alerts: QuerySet[Alert], before: str) -> tuple[list[Alert], str]:
    return keyset_page(alerts, before, field="opened_at", size=PAGE_SIZE)


def _filtered(request: HttpRequest, organization: Organization) -> tuple[Any, QuerySet[Alert]]:
    actor = _actor(request)
    form = AlertFilterForm(request.GET if "status" in request.GET else {"status": "active"})
    form.limit_rules(selectors.rule_list(actor=actor, organization_path=organization.path))
    if not form.is_valid():
        return form, Alert.objects.none()
    data = form.cleaned_data
    alerts = selectors.alert_list(
        actor=actor,
        organization_path=organization.path,
        status=data["status"],
        severity=data["severity"],
        rule_id=uuid.UUID(data["rule"]) if data["rule"] else None,
    ).select_related("organization")
    if data["device"].strip():
        alerts = alerts.filter(device__serial__startswith=data["device"].strip())
    return form, alerts


@login_required
def alert_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "alert.view")
    form, alerts = _filtered(request, organization)
    rows, cursor = _page(alerts, request.GET.get("before", ""))
    query = {key: value for key, value in request.GET.items() if key != "before"}
    context = {
        "organization": organization,
        "form": form,
        "rows": _rows(actor, rows),
        "next_url": f"?{urlencode({**query, 'before': cursor})}" if cursor else "",
        "counts": selectors.alert_counts(actor=actor, organization_path=organization.path),
        "severities": sorted(SEVERITY_RANK, key=lambda s: -SEVERITY_RANK[s]),
        "can_view_rules": actor.has_perm("alertrule.view", organization.path),
    }
    return render(request, "telemetry/alert_list.html", context)


@login_required
def alert_count(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    """The live count badge (polled by the alerts page, refreshed after each action)."""
    organization = organization_for(request, organization_id, "alert.view")
    counts = selectors.alert_counts(actor=_actor(request), organization_path=organization.path)
    context = {"organization": organization, "counts": counts}
    return render(request, "telemetry/alert_count.html", context)


def _alert_for(request: HttpRequest, alert_id: uuid.UUID) -> Alert:
    visible = Alert.objects.for_actor(_actor(request), "view").select_related(
        "rule", "device", "organization", "acknowledged_by", "resolved_by"
    )
    return get_object_or_404(visible, pk=alert_id)


@login_required
def alert_detail(request: HttpRequest, alert_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    alert = _alert_for(request, alert_id)
    organization = organization_for(request, alert.organization_id, "alert.view")
    context = {
        "organization": organization,
        "alert": alert,
        "timeline": selectors.alert_timeline(alert=alert),
        "can_change": actor.has_perm("alert.change", alert.organization.path),
        "note_form": AlertNoteForm(),
    }
    return render(request, "telemetry/alert_detail.html", context)


@login_required
@require_POST
def alert_action(request: HttpRequest, alert_id: uuid.UUID, verb: str) -> HttpResponse:
    """Acknowledge, resolve or reopen; htmx gets the updated row, a form post a redirect."""
    if verb not in ACTIONS:
        raise Http404("No such action.")
    actor = _actor(request)
    alert = _alert_for(request, alert_id)
    form = AlertNoteForm(request.POST)
    note = form.cleaned_data["note"] if form.is_valid() else ""
    error = ""
    try:
        alert = ACTIONS[verb](actor=actor, alert=alert, note=note)
    except ValidationError as invalid:
        error = " ".join(invalid.messages)
    if request.headers.get("HX-Request"):
        alert = _alert_for(request, alert.pk)
        context = {"row": _rows(actor, [alert])[0], "error": error}
        response = render(request, "telemetry/alert_row.html", context)
        response["HX-Trigger"] = "alerts-changed"
        return response
    if error:
        messages.error(request, error)
    else:
        messages.success(request, f"Alert {DONE[verb]}.")
    return redirect("alerts:detail", alert_id=alert.pk)


# --- rules -------------------------------------------------------------------------------------


@login_required
def rule_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "alertrule.view")
    rules = selectors.rule_list(actor=actor, organization_path=organization.path)
    context = {
        "organization": organization,
        "rules": [
            {"rule": rule, "summary": summarize(rule.kind, rule.condition)} for rule in rules[:500]
        ],
        "can_add": actor.has_perm("alertrule.add", organization.path),
    }
    return render(request, "telemetry/alert_rules.html", context)


def _rule_page(
    request: HttpRequest, organization: Organization, form: AlertRuleForm, rule: Any, status: int
) -> HttpResponse:
    context = {
        "organization": organization,
        "form": form,
        "rule": rule,
        "kind_fields": [
            {"kind": kind, "label": RuleKind(kind).label, "fields": [form[name] for name in names]}
            for kind, names in KIND_FIELDS.items()
        ],
        "can_delete": rule is not None
        and _actor(request).has_perm("alertrule.delete", rule.organization.path),
    }
    return render(request, "telemetry/alert_rule_form.html", context, status=status)


def _save_rule(
    request: HttpRequest, organization: Organization, form: AlertRuleForm, rule: Any
) -> AlertRule | None:
    actor = _actor(request)
    try:
        fields = form.rule_fields(actor)
        if rule is None:
            return services.rule_create(
                actor=actor, organization=organization, kind=form.cleaned_data["kind"], **fields
            )
        return services.rule_update(actor=actor, rule=rule, **fields)
    except ValidationError as error:
        _apply_rule_errors(form, error)
        return None


@login_required
@require_http_methods(["GET", "POST"])
def rule_form(
    request: HttpRequest, organization_id: uuid.UUID, rule_id: uuid.UUID | None = None
) -> HttpResponse:
    """New rule (``/o/<id>/alert-rules/new/``) or an existing one (``.../<rule id>/``)."""
    actor = _actor(request)
    rule = None
    if rule_id is not None:
        rule = get_object_or_404(
            AlertRule.objects.for_actor(actor, "view").select_related("organization", "device"),
            pk=rule_id,
            organization_id=organization_id,
        )
    permission = "alertrule.add" if rule is None else "alertrule.view"
    organization = organization_for(request, organization_id, permission)
    form = AlertRuleForm(request.POST if request.method == "POST" else None)
    form.limit_choices(actor)
    if rule is not None:
        form.fill(rule)
        form.fields["kind"].disabled = True
    if request.method == "GET":
        return _rule_page(request, organization, form, rule, 200)
    if rule is not None and not actor.has_perm("alertrule.change", rule.organization.path):
        raise PermissionDenied
    saved = _save_rule(request, organization, form, rule) if form.is_valid() else None
    if saved is None:
        return _rule_page(request, organization, form, rule, 400)
    messages.success(request, f"Rule {saved.name} was saved.")
    return redirect("alerts:rules", organization_id=organization.pk)


@login_required
@require_POST
def rule_delete(request: HttpRequest, rule_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    rule = get_object_or_404(AlertRule.objects.for_actor(actor, "view"), pk=rule_id)
    organization_id = rule.organization_id
    services.rule_delete(actor=actor, rule=rule)
    messages.success(request, f"Rule {rule.name} was deleted.")
    return redirect("alerts:rules", organization_id=organization_id)


# --- the device page's panel -------------------------------------------------------------------


@login_required
def device_panel(request: HttpRequest, device_id: uuid.UUID) -> HttpResponse:
    """The device's open alerts, loaded into the device page by htmx (an empty answer removes
    the panel for someone who may not view alerts)."""
    actor = _actor(request)
    device = access_device(actor=actor, device_id=device_id)
    if not actor.has_any("alert.view"):
        return HttpResponse("")
    alerts = selectors.device_open_alerts(actor=actor, device_id=device.pk)
    context = {"device": device, "alerts": alerts}
    return render(request, "telemetry/alert_device_panel.html", context)
