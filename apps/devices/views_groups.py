"""Portal pages for device groups (namespace ``groups``).

The list page names its organization (``/o/<id>/groups/``): outside the actor's view is 404,
without ``devicegroup.view`` there 403. A group page is reached by the group's id through
``group_list`` (role scope plus guardian grants), so a group shared with the user opens even
when its organization is outside their view; its members table is then the only place where
those devices show. Writes go through ``apps.devices.groups`` with ``actor=request.actor``.
"""

from __future__ import annotations

import uuid
from typing import Any

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import PORTAL_INPUT, PortalForm, apply_service_error
from apps.accounts.models import Organization, User
from apps.accounts.portal import organization_for, visible_organizations
from apps.core.actors import Actor
from apps.core.scoping import organization_ids_under
from apps.profiles.models import DeviceProfile

from . import groups
from .choices import DeviceState, GroupKind
from .models import Device, DeviceGroup

PAGE_SIZE = 50
MAX_SERIALS = 1000
CHOICES_LIMIT = 200


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _words(text: str) -> list[str]:
    return [word for word in text.replace(",", " ").split() if word]


class GroupForm(PortalForm):
    """A group and, for a dynamic one, its filter built from simple fields (stored as the
    selection JSON of ``apps.devices.selection``)."""

    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    description = forms.CharField(required=False, widget=forms.TextInput(attrs=PORTAL_INPUT))
    kind = forms.ChoiceField(
        choices=GroupKind.choices, initial=GroupKind.STATIC, widget=forms.RadioSelect
    )
    state = forms.MultipleChoiceField(
        choices=DeviceState.choices, required=False, widget=forms.CheckboxSelectMultiple
    )
    tags = forms.CharField(
        required=False,
        help_text="Devices carrying all of these tags (comma separated).",
        widget=forms.TextInput(attrs=PORTAL_INPUT),
    )
    profile = forms.ChoiceField(required=False, widget=forms.Select(attrs=PORTAL_INPUT))
    firmware = forms.CharField(
        required=False,
        help_text="Any of these firmware versions (comma separated).",
        widget=forms.TextInput(attrs=PORTAL_INPUT),
    )
    search = forms.CharField(
        required=False,
        max_length=128,
        help_text="Serial-number prefix or part of the name.",
        widget=forms.TextInput(attrs=PORTAL_INPUT),
    )

    def limit_profiles(self, actor: Actor) -> None:
        profiles = DeviceProfile.objects.for_actor(actor, "view").order_by("name")
        field: forms.ChoiceField = self.fields["profile"]  # type: ignore[assignment]
        field.choices = [("", "Any profile")] + [
            (str(pk), name) for pk, name in profiles.values_list("pk", "name")[:CHOICES_LIMIT]
        ]

    def selection(self) -> dict[str, Any]:
        data = self.cleaned_data
        spec: dict[str, Any] = {}
        if data["state"]:
            spec["state"] = list(data["state"])
        if _words(data["tags"]):
            spec["tags_all"] = _words(data["tags"])
        if data["profile"]:
            spec["profile"] = [data["profile"]]
        if _words(data["firmware"]):
            spec["firmware"] = _words(data["firmware"])
        if data["search"].strip():
            spec["search"] = data["search"].strip()
        return spec if data["kind"] == GroupKind.DYNAMIC else {}


class SerialsForm(PortalForm):
    serials = forms.CharField(
        label="Serial numbers",
        help_text="One per line or separated by commas.",
        widget=forms.Textarea(attrs={**PORTAL_INPUT, "rows": 3}),
    )


class ShareForm(PortalForm):
    email = forms.EmailField(
        required=False, label="User email", widget=forms.EmailInput(attrs=PORTAL_INPUT)
    )
    organization = forms.ChoiceField(required=False, widget=forms.Select(attrs=PORTAL_INPUT))
    permission = forms.ChoiceField(
        choices=[("view", "View"), ("change", "View and change")], initial="view"
    )

    def limit_organizations(self, actor: Actor) -> None:
        field: forms.ChoiceField = self.fields["organization"]  # type: ignore[assignment]
        organizations = visible_organizations(actor).order_by("path")[:CHOICES_LIMIT]
        field.choices = [("", "—")] + [(str(org.pk), org.name) for org in organizations]

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if bool(data.get("email")) == bool(data.get("organization")):
            raise ValidationError("Give either a user email or an organization.")
        return data


# --- the list ----------------------------------------------------------------------------------


def _list_page(
    request: HttpRequest, organization: Organization, form: GroupForm, status: int = 200
) -> HttpResponse:
    actor = _actor(request)
    visible = groups.group_list(actor=actor)
    own = visible.filter(organization__in=organization_ids_under([organization.path]))
    role_paths = actor.paths_for("devicegroup.view")
    shared = (
        visible.exclude(organization__in=organization_ids_under(role_paths))
        if (role_paths and not actor.is_platform_staff)
        else visible.none()
    )
    context = {
        "organization": organization,
        "groups": own.order_by("name"),
        "shared_groups": shared.order_by("name"),
        "form": form,
        "can_add": actor.has_perm("devicegroup.add", organization.path),
    }
    return render(request, "devices/groups.html", context, status=status)


@login_required
@require_http_methods(["GET", "POST"])
def group_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "devicegroup.view")
    form = GroupForm(request.POST if request.method == "POST" else None)
    form.limit_profiles(actor)
    if request.method == "GET":
        return _list_page(request, organization, form)
    if not actor.has_perm("devicegroup.add", organization.path):
        raise PermissionDenied
    if not form.is_valid():
        return _list_page(request, organization, form, status=400)
    try:
        group = groups.group_create(
            actor=actor,
            organization=organization,
            name=form.cleaned_data["name"],
            description=form.cleaned_data["description"],
            kind=form.cleaned_data["kind"],
            filter=form.selection(),
        )
    except ValidationError as error:
        apply_service_error(form, error)
        return _list_page(request, organization, form, status=400)
    messages.success(request, f"Group {group.name} was created.")
    return redirect("groups:detail", group_id=group.pk)


# --- one group ---------------------------------------------------------------------------------


def _group_for(request: HttpRequest, group_id: uuid.UUID, action: str = "view") -> DeviceGroup:
    """404 unless the actor sees the group; 403 unless they may ``action`` it."""
    actor = _actor(request)
    group = get_object_or_404(groups.group_list(actor=actor), pk=group_id)
    if action != "view" and not _allowed(actor, group, action):
        raise PermissionDenied
    return group


def _page(members: QuerySet[Device], after: str) -> tuple[list[Device], str]:
    """One keyset page (newest first) and the id to continue after ("" on the last page)."""
    cursor = _uuid(after)
    if cursor is not None:
        members = members.filter(pk__lt=cursor)
    rows = list(members.select_related("organization")[: PAGE_SIZE + 1])
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    return rows, str(rows[-1].pk) if more else ""


def _allowed(actor: Actor, group: DeviceGroup, action: str) -> bool:
    return groups.group_list(actor=actor, action=action).filter(pk=group.pk).exists()


def _detail_page(
    request: HttpRequest,
    group: DeviceGroup,
    *,
    serials_form: SerialsForm | None = None,
    share_form: ShareForm | None = None,
    status: int = 200,
) -> HttpResponse:
    actor = _actor(request)
    can_share = _allowed(actor, group, "share")
    rows, next_after = _page(
        groups.group_members(actor=actor, group=group), request.GET.get("after", "")
    )
    share_form = share_form or ShareForm()
    share_form.limit_organizations(actor)
    context = {
        "group": group,
        "members": rows,
        "next_after": next_after,
        "can_change": _allowed(actor, group, "change"),
        "can_delete": _allowed(actor, group, "delete"),
        "can_share": can_share,
        "shares": groups.group_shares(group=group) if can_share else [],
        "serials_form": serials_form or SerialsForm(),
        "share_form": share_form,
    }
    return render(request, "devices/groups_detail.html", context, status=status)


@login_required
def group_detail(request: HttpRequest, group_id: uuid.UUID) -> HttpResponse:
    return _detail_page(request, _group_for(request, group_id))


@login_required
@require_POST
def group_add_devices(request: HttpRequest, group_id: uuid.UUID) -> HttpResponse:
    group = _group_for(request, group_id, "change")
    form = SerialsForm(request.POST)
    if not form.is_valid():
        return _detail_page(request, group, serials_form=form, status=400)
    serials = sorted(set(_words(form.cleaned_data["serials"])))
    if len(serials) > MAX_SERIALS:
        form.add_error("serials", f"At most {MAX_SERIALS} serial numbers at a time.")
        return _detail_page(request, group, serials_form=form, status=400)
    found = dict(
        Device.objects.for_actor(_actor(request), "view")
        .filter(
            serial__in=serials,
            organization__in=organization_ids_under([group.organization.path]),
        )
        .values_list("pk", "serial")
    )
    try:
        change = groups.group_add_devices(actor=_actor(request), group=group, device_ids=found)
    except ValidationError as error:
        apply_service_error(form, error)
        return _detail_page(request, group, serials_form=form, status=400)
    unknown = sorted(set(serials) - set(found.values()))
    messages.success(request, f"{change.count} device(s) added to {group.name}.")
    if unknown:
        messages.warning(request, f"Not found here: {', '.join(unknown)}.")
    return redirect("groups:detail", group_id=group.pk)


@login_required
@require_POST
def group_remove_device(
    request: HttpRequest, group_id: uuid.UUID, device_id: uuid.UUID
) -> HttpResponse:
    group = _group_for(request, group_id, "change")
    change = groups.group_remove_devices(actor=_actor(request), group=group, device_ids=[device_id])
    messages.success(request, f"{change.count} device(s) removed from {group.name}.")
    return redirect("groups:detail", group_id=group.pk)


def _share_target(form: ShareForm) -> dict[str, Any]:
    if form.cleaned_data["email"]:
        user = User.objects.filter(email__iexact=form.cleaned_data["email"], is_active=True).first()
        if user is None:
            raise ValidationError({"email": "No active user has this email address."})
        return {"user": user}
    organization = Organization.objects.get(pk=form.cleaned_data["organization"])
    return {"organization": organization}


@login_required
@require_POST
def group_share(request: HttpRequest, group_id: uuid.UUID) -> HttpResponse:
    group = _group_for(request, group_id, "share")
    form = ShareForm(request.POST)
    form.limit_organizations(_actor(request))
    if not form.is_valid():
        return _detail_page(request, group, share_form=form, status=400)
    try:
        groups.group_share(
            actor=_actor(request),
            group=group,
            permission=form.cleaned_data["permission"],
            **_share_target(form),
        )
    except ValidationError as error:
        apply_service_error(form, error)
        return _detail_page(request, group, share_form=form, status=400)
    messages.success(request, f"{group.name} is now shared.")
    return redirect("groups:detail", group_id=group.pk)


@login_required
@require_POST
def group_unshare(request: HttpRequest, group_id: uuid.UUID) -> HttpResponse:
    group = _group_for(request, group_id, "share")
    target: dict[str, Any] = {}
    if request.POST.get("user"):
        target["user"] = get_object_or_404(User, pk=_uuid(request.POST["user"]))
    else:
        target["organization"] = get_object_or_404(
            Organization, pk=_uuid(request.POST.get("organization", ""))
        )
    groups.group_unshare(actor=_actor(request), group=group, **target)
    messages.success(request, f"Sharing of {group.name} was withdrawn.")
    return redirect("groups:detail", group_id=group.pk)


@login_required
@require_POST
def group_delete(request: HttpRequest, group_id: uuid.UUID) -> HttpResponse:
    group = _group_for(request, group_id, "delete")
    organization_id = group.organization_id
    groups.group_delete(actor=_actor(request), group=group)
    messages.success(request, f"Group {group.name} was deleted.")
    return redirect("groups:list", organization_id=organization_id)


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None
