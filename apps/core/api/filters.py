from __future__ import annotations

from django_filters import rest_framework as filters

from apps.core.models import Event


class EventFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    type = filters.CharFilter(lookup_expr="startswith", help_text="Event type prefix.")
    subject_type = filters.CharFilter()
    subject_id = filters.CharFilter()

    class Meta:
        model = Event
        fields = ["organization", "type", "subject_type", "subject_id"]
