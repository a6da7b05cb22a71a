"""Portal pages of the notifications (namespace ``notify``)."""

from __future__ import annotations

from django.urls import path

from . import views_notify, views_notify_channels

channels = views_notify_channels

urlpatterns = [
    path("notifications/", views_notify.notification_inbox, name="inbox"),
    path("notifications/bell/", views_notify.notification_bell, name="bell"),
    path("notifications/read-all/", views_notify.notification_read_all, name="read-all"),
    path("notifications/preferences/", views_notify.notification_preferences, name="preferences"),
    path(
        "notifications/<uuid:notification_id>/open/",
        views_notify.notification_open,
        name="open",
    ),
    path("o/<uuid:organization_id>/notification-channels/", channels.channel_list, name="channels"),
    path(
        "o/<uuid:organization_id>/notification-channels/new/",
        channels.channel_create,
        name="channel-create",
    ),
    path("notification-channels/<uuid:channel_id>/", channels.channel_detail, name="channel"),
    path(
        "notification-channels/<uuid:channel_id>/edit/", channels.channel_edit, name="channel-edit"
    ),
    path(
        "notification-channels/<uuid:channel_id>/secret/",
        channels.channel_secret,
        name="channel-secret",
    ),
    path(
        "notification-channels/<uuid:channel_id>/rotate-secret/",
        channels.channel_rotate,
        name="channel-rotate",
    ),
    path(
        "notification-channels/<uuid:channel_id>/test/", channels.channel_test, name="channel-test"
    ),
    path(
        "notification-channels/<uuid:channel_id>/delete/",
        channels.channel_delete,
        name="channel-delete",
    ),
    path(
        "notification-channels/<uuid:channel_id>/deliveries/<int:delivery_id>/redeliver/",
        channels.channel_redeliver,
        name="channel-redeliver",
    ),
]
