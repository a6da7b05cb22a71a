from __future__ import annotations

from django.db.models import Q, QuerySet
from django.utils import timezone
from django_filters import rest_framework as filters

from apps.accounts.models import APIKey, Invitation, Membership, Organization
from apps.accounts.roles import Role


class OrganizationFilter(filters.FilterSet):
    parent = filters.UUIDFilter(field_name="parent_id")
    kind = filters.ChoiceFilter(choices=Organization.Kind.choices)
    is_active = filters.BooleanFilter()
    slug = filters.CharFilter()

    class Meta:
        model = Organization
        fields = ["parent", "kind", "is_active", "slug"]


class MembershipFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    role = filters.ChoiceFilter(choices=Role.choices)
    email = filters.CharFilter(field_name="user__email", lookup_expr="iexact")

    class Meta:
        model = Membership
        fields = ["organization", "role", "email"]


class InvitationFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    role = filters.ChoiceFilter(choices=Role.choices)
    email = filters.CharFilter(lookup_expr="iexact")
    status = filters.ChoiceFilter(
        choices=[(s, s) for s in ("pending", "accepted", "expired", "revoked")],
        method="filter_status",
    )

    class Meta:
        model = Invitation
        fields = ["organization", "role", "email", "status"]

    def filter_status(
        self, queryset: QuerySet[Invitation], name: str, value: str
    ) -> QuerySet[Invitation]:
        now = timezone.now()
        open_ = Q(revoked_at__isnull=True, accepted_at__isnull=True)
        conditions = {
            "revoked": Q(revoked_at__isnull=False),
            "accepted": Q(revoked_at__isnull=True, accepted_at__isnull=False),
            "expired": open_ & Q(expires_at__lte=now),
            "pending": open_ & Q(expires_at__gt=now),
        }
        return queryset.filter(conditions[value])


class APIKeyFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    role = filters.ChoiceFilter(choices=Role.choices)
    revoked = filters.BooleanFilter(field_name="revoked_at", lookup_expr="isnull", exclude=True)

    class Meta:
        model = APIKey
        fields = ["organization", "role", "revoked"]
