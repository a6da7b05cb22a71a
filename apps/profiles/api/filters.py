from __future__ import annotations

from django_filters import rest_framework as filters

from apps.profiles.models import DeviceProfile


class ProfileFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    slug = filters.CharFilter()
    name = filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = DeviceProfile
        fields = ["organization", "slug", "name"]
