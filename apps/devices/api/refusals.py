"""``GET /api/v1/broker-refusals/``: what the broker refused, newest first (``refusals.py``).

Scoped like credentials (``credential.view``): an organization sees the refusals of its own
devices; refusals the broker could not attribute to a device (a failed handshake, a username
that is no device) have no organization and are visible to platform staff only.
"""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import mixins, serializers, viewsets

from apps.core.api.viewsets import ScopedViewSetMixin
from apps.devices.models import BrokerRefusal, RefusalReason

from .pki import NewestFirst


class BrokerRefusalSerializer(serializers.ModelSerializer[BrokerRefusal]):
    class Meta:
        model = BrokerRefusal
        fields = [
            "id",
            "received_at",
            "organization",
            "device",
            "reason",
            "count",
            "username",
            "address",
            "topic",
            "detail",
        ]
        read_only_fields = fields


class BrokerRefusalQuerySerializer(serializers.Serializer[Any]):
    device = serializers.UUIDField(required=False)
    reason = serializers.ChoiceField(choices=RefusalReason.choices, required=False)
    since = serializers.DateTimeField(required=False, help_text="Received at or after.")


@extend_schema_view(list=extend_schema(parameters=[BrokerRefusalQuerySerializer]))
class BrokerRefusalViewSet(  # type: ignore[misc]
    ScopedViewSetMixin, mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet
):
    """Refused publishes, subscriptions, oversized messages, handshakes and credentials; each
    row counts identical refusals within one second."""

    queryset = BrokerRefusal.objects.all()
    serializer_class = BrokerRefusalSerializer
    pagination_class = NewestFirst
    filter_backends = ()

    def get_queryset(self) -> QuerySet[BrokerRefusal]:
        rows = super().get_queryset()
        if self.action != "list":
            return rows
        query = BrokerRefusalQuerySerializer(data=self.request.query_params)
        query.is_valid(raise_exception=True)
        filters = dict(query.validated_data)
        if "since" in filters:
            filters["received_at__gte"] = filters.pop("since")
        return rows.filter(**filters)
