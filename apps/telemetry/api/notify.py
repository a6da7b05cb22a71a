"""REST endpoints of the notifications.

- ``/notification-channels/``: CRUD (``notificationchannel.*``); the signing secret is in the
  create and ``rotate-secret`` responses only (write-only otherwise); ``test`` queues a test
  message through the outbox.
- ``/notifications/``: the caller's own inbox (list, read one, read all, unread count).
- ``/notification-preferences/me/``: the caller's own preferences (GET, PUT, PATCH).

Inbox and preferences belong to people: API keys get 403 there.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from apps.core.actors import Actor
from apps.core.api.serializers import IdField
from apps.core.api.viewsets import (
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    ScopedViewSetMixin,
    parse_uuid,
    request_actor,
)

from ..choices import ChannelKind, Severity
from ..models import Notification, NotificationChannel, NotificationPreference
from ..notify import inbox, selectors, services
from ..notify.fanout import channel_consumer
from ..notify.messages import masked_url

# --- channels ----------------------------------------------------------------------------------


class ChannelSerializer(serializers.ModelSerializer[NotificationChannel]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    url = serializers.SerializerMethodField(
        help_text="A Slack-compatible URL is itself a credential: shown masked."
    )
    signed = serializers.SerializerMethodField(help_text="Has a Standard Webhooks secret.")

    class Meta:
        model = NotificationChannel
        fields = [
            "id",
            "organization",
            "name",
            "kind",
            "url",
            "enabled",
            "min_severity",
            "events",
            "signed",
            "previous_secret_expires_at",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_url(self, channel: NotificationChannel) -> str:
        return masked_url(channel.kind, channel.url)

    def get_signed(self, channel: NotificationChannel) -> bool:
        return bool(channel.secret_encrypted)


class ChannelWithSecretSerializer(ChannelSerializer):
    secret = serializers.CharField(
        read_only=True,
        help_text="The whsec_ signing secret, in this response only (empty for Slack).",
    )

    class Meta(ChannelSerializer.Meta):
        fields = [*ChannelSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class _PatternsField(serializers.ListField):
    child = serializers.CharField(max_length=100)


class ChannelCreateSerializer(serializers.Serializer[Any]):
    organization = IdField()
    name = serializers.CharField(max_length=200)
    kind = serializers.ChoiceField(choices=ChannelKind.choices)
    url = serializers.URLField(max_length=1000, help_text="http(s) only.")
    enabled = serializers.BooleanField(default=True)
    min_severity = serializers.ChoiceField(choices=Severity.choices, default=Severity.INFO)
    events = _PatternsField(
        required=False,
        default=list,
        help_text="Event patterns (fnmatch); empty: every alert event.",
    )
    secret = serializers.CharField(
        required=False,
        default="",
        write_only=True,
        max_length=200,
        help_text="A whsec_ secret to use instead of a generated one (webhook channels).",
    )


class ChannelUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    url = serializers.URLField(max_length=1000, required=False)
    enabled = serializers.BooleanField(required=False)
    min_severity = serializers.ChoiceField(choices=Severity.choices, required=False)
    events = _PatternsField(required=False)


class TestQueuedSerializer(serializers.Serializer[Any]):
    event = serializers.UUIDField(help_text="The test event: GET /api/v1/events/{id}/.")
    consumer = serializers.CharField(help_text="Its delivery's consumer name.")


@extend_schema_view(
    create=extend_schema(
        request=ChannelCreateSerializer, responses={201: ChannelWithSecretSerializer}
    ),
    partial_update=extend_schema(
        request=ChannelUpdateSerializer, responses={200: ChannelSerializer}
    ),
)
class NotificationChannelViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    ScopedCreateMixin,
    ScopedPartialUpdateMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Outbound channels of alert notifications; ``?organization=`` and ``?kind=`` narrow."""

    queryset = NotificationChannel.objects.all()
    serializer_class = ChannelSerializer
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]
    filterset_fields = ["organization", "kind", "enabled"]
    input_serializers = {
        "create": ChannelCreateSerializer,
        "partial_update": ChannelUpdateSerializer,
    }

    def get_queryset(self) -> QuerySet[NotificationChannel]:
        return selectors.channel_list(actor=self.actor)

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        with transaction.atomic():
            issued = services.channel_create(
                actor=self.actor,
                organization=self.organization_for(data.pop("organization")),
                **data,
            )
            self.ensure_in_scope(issued.channel)
        return self._with_secret(issued, status.HTTP_201_CREATED)

    def _with_secret(self, issued: services.IssuedChannel, code: int) -> Response:
        channel = issued.channel
        channel.secret = issued.secret  # type: ignore[attr-defined]  # shown this once
        shown = ChannelWithSecretSerializer(channel, context=self.get_serializer_context())
        return Response(shown.data, status=code)

    def update_object(self, serializer: Any) -> NotificationChannel:
        return services.channel_update(
            actor=self.actor, channel=serializer.instance, **serializer.validated_data
        )

    def destroy_object(self, instance: NotificationChannel) -> None:
        services.channel_delete(actor=self.actor, channel=instance)

    @extend_schema(
        summary="Rotate the signing secret (the new one is in this response only)",
        request=None,
        responses={200: ChannelWithSecretSerializer},
    )
    @action(detail=True, methods=["post"], url_path="rotate-secret", scope_action="change")
    def rotate_secret(self, request: Request, pk: Any = None) -> Response:
        channel = self.get_object()
        with transaction.atomic():
            issued = services.channel_rotate_secret(actor=self.actor, channel=channel)
            self.ensure_in_scope(issued.channel)
        return self._with_secret(issued, status.HTTP_200_OK)

    @extend_schema(
        summary="Send a test message through the outbox",
        request=None,
        responses={202: TestQueuedSerializer},
    )
    @action(detail=True, methods=["post"], scope_action="change")
    def test(self, request: Request, pk: Any = None) -> Response:
        channel = self.get_object()
        event = services.channel_send_test(actor=self.actor, channel=channel)
        body = {"event": str(event.pk), "consumer": channel_consumer(channel.pk)}
        return Response(body, status=status.HTTP_202_ACCEPTED)


# --- the inbox ---------------------------------------------------------------------------------


class NotificationSerializer(serializers.ModelSerializer[Notification]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    event = serializers.UUIDField(source="event_id", read_only=True, allow_null=True)

    class Meta:
        model = Notification
        fields = [
            "id",
            "organization",
            "event",
            "severity",
            "title",
            "body",
            "url",
            "created_at",
            "read_at",
        ]
        read_only_fields = fields


class ReadAllSerializer(serializers.Serializer[Any]):
    marked = serializers.IntegerField(help_text="How many notifications were marked read.")


class UnreadSerializer(serializers.Serializer[Any]):
    unread = serializers.IntegerField()


def _person(request: Request) -> Actor:
    """The caller, when a person; 401 for nobody, 403 for an API key."""
    actor = request_actor(request)
    if actor.user_id is None:
        raise exceptions.PermissionDenied("Notifications belong to people: API keys have none.")
    return actor


def _reader(request: Request) -> Actor:
    """A person who may see alerts somewhere: the only ones notified (403 for the others,
    whatever the id, as everywhere in the API)."""
    actor = _person(request)
    if not actor.has_any("alert.view"):
        raise exceptions.PermissionDenied()
    return actor


UNREAD = OpenApiParameter(
    "unread", bool, description="Only unread (true) or only read (false) notifications."
)


@extend_schema_view(list=extend_schema(parameters=[UNREAD]))
class NotificationViewSet(  # type: ignore[misc]
    mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """The caller's own notifications, newest first; another person's are not found (404)."""

    serializer_class = NotificationSerializer
    queryset = Notification.objects.none()  # the inbox selector scopes every request

    def get_queryset(self) -> QuerySet[Notification]:
        rows = inbox.inbox(actor=_reader(self.request))
        unread = self.request.query_params.get("unread", "")
        if unread in ("true", "false"):
            rows = rows.filter(read_at__isnull=unread == "true")
        return rows

    def get_object(self) -> Notification:
        found = self.get_queryset().filter(pk=parse_uuid(self.kwargs["pk"])).first()
        if found is None:
            raise exceptions.NotFound()
        return found

    @extend_schema(summary="Mark one notification read", request=None)
    @action(detail=True, methods=["post"])
    def read(self, request: Request, pk: Any = None) -> Response:
        notification = inbox.notification_mark_read(
            actor=_reader(request), notification=self.get_object()
        )
        return Response(NotificationSerializer(notification).data)

    @extend_schema(
        summary="Mark every notification read", request=None, responses={200: ReadAllSerializer}
    )
    @action(detail=False, methods=["post"], url_path="read-all")
    def read_all(self, request: Request) -> Response:
        return Response({"marked": inbox.notifications_mark_all_read(actor=_reader(request))})

    @extend_schema(summary="How many notifications are unread", responses={200: UnreadSerializer})
    @action(detail=False, methods=["get"], url_path="unread-count", pagination_class=None)
    def unread_count(self, request: Request) -> Response:
        return Response({"unread": inbox.unread_count(actor=_reader(request))})


# --- preferences -------------------------------------------------------------------------------


class PreferenceSerializer(serializers.ModelSerializer[NotificationPreference]):
    class Meta:
        model = NotificationPreference
        fields = [*inbox.PREFERENCE_FIELDS, "updated_at"]
        read_only_fields = fields


class PreferenceInputSerializer(serializers.Serializer[Any]):
    """PUT replaces all of them (the quiet hours default to none); PATCH changes some."""

    portal = serializers.BooleanField(help_text="Record notifications in the portal inbox.")
    email = serializers.BooleanField(help_text="Email notifications.")
    min_severity = serializers.ChoiceField(
        choices=Severity.choices, help_text="Nothing less severe than this."
    )
    quiet_start = serializers.TimeField(allow_null=True, required=False, default=None)
    quiet_end = serializers.TimeField(
        allow_null=True,
        required=False,
        default=None,
        help_text="Quiet hours [start, end) in your time zone (across midnight when end < "
        "start): only critical alerts are emailed then; the portal still records everything.",
    )
    timezone = serializers.CharField(max_length=64, help_text="An IANA time zone name.")


class NotificationPreferenceView(APIView):
    """The caller's notification preferences (the defaults until they save some)."""

    serializer_class = PreferenceSerializer

    @extend_schema(summary="Your notification preferences", responses={200: PreferenceSerializer})
    def get(self, request: Request) -> Response:
        preference = inbox.preference_for(actor=_person(request))
        return Response(PreferenceSerializer(preference).data)

    @extend_schema(
        summary="Replace your notification preferences",
        request=PreferenceInputSerializer,
        responses={200: PreferenceSerializer},
    )
    def put(self, request: Request) -> Response:
        return self._save(request, partial=False)

    @extend_schema(
        summary="Change some of your notification preferences",
        request=PreferenceInputSerializer,
        responses={200: PreferenceSerializer},
    )
    def patch(self, request: Request) -> Response:
        return self._save(request, partial=True)

    def _save(self, request: Request, *, partial: bool) -> Response:
        actor = _person(request)
        serializer = PreferenceInputSerializer(data=request.data, partial=partial)
        serializer.is_valid(raise_exception=True)
        current = inbox.preference_for(actor=actor)
        values = {name: getattr(current, name) for name in inbox.PREFERENCE_FIELDS}
        saved = inbox.preference_update(actor=actor, **{**values, **serializer.validated_data})
        return Response(PreferenceSerializer(saved).data)
