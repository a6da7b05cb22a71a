"""Portal pages of an organization's notification channels: list, create, edit, the secret
shown once, rotate, send a test, delete, and the failing deliveries with a redeliver button.

A page names its organization (``/o/<id>/notification-channels/``) or reaches a channel by id
through ``for_actor``: outside the actor's view is 404; visible without the permission, 403.
"""

from __future__ import annotations

import uuid

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.forms import apply_service_error
from apps.accounts.portal import organization_for, set_current_organization
from apps.core import events
from apps.core.actors import Actor
from apps.core.models import DeliveryStatus, EventDelivery

from .forms_notify import ChannelForm
from .models import NotificationChannel
from .notify import selectors, services
from .notify.fanout import channel_consumer
from .notify.messages import masked_url

SECRET_SESSION_KEY = "portal_channel_secret:{}"


def _actor(request: HttpRequest) -> Actor:
    return request.actor  # type: ignore[attr-defined, no-any-return]


def _channel(
    request: HttpRequest, channel_id: uuid.UUID, action: str = "view"
) -> NotificationChannel:
    """The channel: 404 outside the actor's view, 403 when visible but ``action`` is not held."""
    actor = _actor(request)
    channel = get_object_or_404(
        selectors.channel_list(actor=actor).select_related("organization"), pk=channel_id
    )
    if action != "view" and not actor.has_perm(
        f"notificationchannel.{action}", channel.organization.path
    ):
        raise PermissionDenied
    set_current_organization(request, channel.organization)
    return channel


@login_required
def channel_list(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "notificationchannel.view")
    channels = selectors.channel_list(actor=actor, organization=organization).order_by("name")
    rows = [
        {"channel": channel, "url": masked_url(channel.kind, channel.url)} for channel in channels
    ]
    context = {
        "organization": organization,
        "rows": rows,
        "can_add": actor.has_perm("notificationchannel.add", organization.path),
    }
    return render(request, "telemetry/channels.html", context)


def _remember_secret(request: HttpRequest, issued: services.IssuedChannel) -> HttpResponse:
    if not issued.secret:
        return redirect("notify:channel", channel_id=issued.channel.pk)
    request.session[SECRET_SESSION_KEY.format(issued.channel.pk)] = issued.secret
    return redirect("notify:channel-secret", channel_id=issued.channel.pk)


@login_required
@require_http_methods(["GET", "POST"])
def channel_create(request: HttpRequest, organization_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    organization = organization_for(request, organization_id, "notificationchannel.add")
    form = ChannelForm(request.POST or None, initial={"enabled": True})
    if request.method == "POST" and form.is_valid():
        try:
            issued = services.channel_create(
                actor=actor, organization=organization, **form.service_fields()
            )
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"The channel {issued.channel.name} was created.")
            return _remember_secret(request, issued)
    context = {"organization": organization, "form": form, "channel": None}
    return render(
        request, "telemetry/channel_form.html", context, status=400 if form.errors else 200
    )


@login_required
def channel_detail(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    actor = _actor(request)
    channel = _channel(request, channel_id)
    path = channel.organization.path
    context = {
        "organization": channel.organization,
        "channel": channel,
        "url": masked_url(channel.kind, channel.url),
        "troubles": selectors.channel_troubles(channel=channel),
        "consumer": channel_consumer(channel.pk),
        "can_change": actor.has_perm("notificationchannel.change", path),
        "can_delete": actor.has_perm("notificationchannel.delete", path),
        "can_redeliver": actor.has_perm("event.redeliver", path),
    }
    return render(request, "telemetry/channel_detail.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def channel_edit(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    channel = _channel(request, channel_id, "change")
    form = ChannelForm(request.POST or None, initial=ChannelForm.initial_for(channel), editing=True)
    if request.method == "POST" and form.is_valid():
        try:
            services.channel_update(actor=_actor(request), channel=channel, **form.service_fields())
        except ValidationError as error:
            apply_service_error(form, error)
        else:
            messages.success(request, f"The channel {channel.name} was saved.")
            return redirect("notify:channel", channel_id=channel.pk)
    context = {"organization": channel.organization, "form": form, "channel": channel}
    return render(
        request, "telemetry/channel_form.html", context, status=400 if form.errors else 200
    )


@login_required
def channel_secret(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    """Shows a new signing secret exactly once: it leaves the session as it is rendered."""
    channel = _channel(request, channel_id)
    secret = request.session.pop(SECRET_SESSION_KEY.format(channel.pk), None)
    context = {"organization": channel.organization, "channel": channel, "secret": secret}
    response = render(request, "telemetry/channel_secret.html", context)
    response["Cache-Control"] = "no-store"
    return response


@login_required
@require_POST
def channel_rotate(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    channel = _channel(request, channel_id, "change")
    try:
        issued = services.channel_rotate_secret(actor=_actor(request), channel=channel)
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("notify:channel", channel_id=channel.pk)
    messages.success(request, "A new signing secret was made; the previous one signs for 24 hours.")
    return _remember_secret(request, issued)


@login_required
@require_POST
def channel_test(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    channel = _channel(request, channel_id, "change")
    services.channel_send_test(actor=_actor(request), channel=channel)
    messages.success(
        request, "A test message is on its way; a failure shows below within a minute."
    )
    return redirect("notify:channel", channel_id=channel.pk)


@login_required
@require_POST
def channel_delete(request: HttpRequest, channel_id: uuid.UUID) -> HttpResponse:
    channel = _channel(request, channel_id, "delete")
    services.channel_delete(actor=_actor(request), channel=channel)
    messages.success(request, f"The channel {channel.name} was deleted.")
    return redirect("notify:channels", organization_id=channel.organization_id)


@login_required
@require_POST
def channel_redeliver(
    request: HttpRequest, channel_id: uuid.UUID, delivery_id: int
) -> HttpResponse:
    """Queue one of the channel's dead letters again (``events.redeliver`` checks the scope
    and writes the audit record)."""
    channel = _channel(request, channel_id)
    delivery = get_object_or_404(
        EventDelivery,
        pk=delivery_id,
        consumer=channel_consumer(channel.pk),
        status=DeliveryStatus.DEAD,
    )
    if not events.redeliver(actor=_actor(request), delivery_ids=[delivery.pk]):
        raise PermissionDenied
    messages.success(request, "The delivery was queued again.")
    return redirect("notify:channel", channel_id=channel.pk)
