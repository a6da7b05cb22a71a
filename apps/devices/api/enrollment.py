"""REST endpoints of zero-touch provisioning: enrollment policies and their claim tokens.

Policies are listed, read, created and changed (``enabled: false`` disables one; they are never
deleted: their tokens and audit trail stay). A claim token's secret is in its create response
only; ``revoke`` ends it. Both are the ``enrollmentpolicy`` resource: a claim token is reached
through its policy's organization.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction
from django.db.models import QuerySet
from django_filters import rest_framework as filters
from drf_spectacular.utils import extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from apps.accounts.models import Organization, User
from apps.core.api.serializers import IdField
from apps.core.api.viewsets import (
    ScopedCreateListRetrieveUpdateViewSet,
    ScopedViewSetMixin,
)
from apps.devices import enrollment_policies
from apps.devices.choices import EnrollmentMethod, EscrowAction, FirstContact
from apps.devices.models import CertificateAuthority, ClaimToken, EnrollmentPolicy
from apps.profiles.models import DeviceProfile

# --- serializers -------------------------------------------------------------------------------


class EnrollmentPolicySerializer(serializers.ModelSerializer[EnrollmentPolicy]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    profile = serializers.UUIDField(source="profile_id", read_only=True, allow_null=True)
    target_organization = serializers.UUIDField(source="target_organization_id", read_only=True)
    authorities = serializers.SerializerMethodField()

    class Meta:
        model = EnrollmentPolicy
        fields = [
            "id",
            "organization",
            "name",
            "profile",
            "method",
            "first_contact",
            "escrow_action",
            "target_organization",
            "authorities",
            "allow_token_credentials",
            "enabled",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    def get_authorities(self, policy: EnrollmentPolicy) -> list[str]:
        return sorted(str(authority.pk) for authority in policy.authorities.all())


class PolicyFieldsSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    profile = IdField(required=False, allow_null=True, help_text="Devices of this profile only.")
    first_contact = serializers.ChoiceField(choices=FirstContact.choices, required=False)
    escrow_action = serializers.ChoiceField(choices=EscrowAction.choices, required=False)
    target_organization = IdField(
        required=False, help_text="Where unknown devices land (default: the organization)."
    )
    authorities = serializers.ListField(
        child=serializers.UUIDField(),
        required=False,
        max_length=20,
        help_text="Registered CAs whose factory certificates this policy trusts.",
    )
    allow_token_credentials = serializers.BooleanField(required=False)
    enabled = serializers.BooleanField(required=False)


class PolicyCreateSerializer(PolicyFieldsSerializer):
    organization = IdField()
    method = serializers.ChoiceField(choices=EnrollmentMethod.choices)


class PolicyUpdateSerializer(PolicyFieldsSerializer):
    name = serializers.CharField(max_length=200, required=False)
    method = serializers.ChoiceField(choices=EnrollmentMethod.choices, required=False)


class ClaimTokenSerializer(serializers.ModelSerializer[ClaimToken]):
    policy = serializers.UUIDField(source="policy_id", read_only=True)

    class Meta:
        model = ClaimToken
        fields = [
            "id",
            "policy",
            "prefix",
            "label",
            "expires_at",
            "max_uses",
            "uses",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = fields


class ClaimTokenCreatedSerializer(ClaimTokenSerializer):
    token = serializers.CharField(
        read_only=True, help_text="fo_claim_<prefix>_<secret>: in this response only."
    )

    class Meta(ClaimTokenSerializer.Meta):
        fields = [*ClaimTokenSerializer.Meta.fields, "token"]
        read_only_fields = fields


class ClaimTokenCreateSerializer(serializers.Serializer[Any]):
    policy = IdField()
    expires_at = serializers.DateTimeField()
    max_uses = serializers.IntegerField(min_value=1, max_value=enrollment_policies.MAX_CLAIM_USES)
    label = serializers.CharField(  # type: ignore[assignment]  # not Field.label
        max_length=100, required=False, allow_blank=True, default=""
    )


class PolicyFilter(filters.FilterSet):
    organization = filters.UUIDFilter(field_name="organization_id")
    method = filters.ChoiceFilter(choices=EnrollmentMethod.choices)
    enabled = filters.BooleanFilter()

    class Meta:
        model = EnrollmentPolicy
        fields = ["organization", "method", "enabled"]


class ClaimTokenFilter(filters.FilterSet):
    policy = filters.UUIDFilter(field_name="policy_id")

    class Meta:
        model = ClaimToken
        fields = ["policy"]


# --- views -------------------------------------------------------------------------------------


@extend_schema_view(
    create=extend_schema(
        request=PolicyCreateSerializer, responses={201: EnrollmentPolicySerializer}
    ),
    partial_update=extend_schema(
        summary="Change an enrollment policy (enabled: false disables it)",
        request=PolicyUpdateSerializer,
        responses={200: EnrollmentPolicySerializer},
    ),
)
class EnrollmentPolicyViewSet(ScopedCreateListRetrieveUpdateViewSet):  # type: ignore[misc]
    """How devices enroll zero-touch: the proof, first contact, where they land."""

    queryset = EnrollmentPolicy.objects.prefetch_related("authorities").order_by("name", "id")
    serializer_class = EnrollmentPolicySerializer
    filterset_class = PolicyFilter
    input_serializers = {
        "create": PolicyCreateSerializer,
        "partial_update": PolicyUpdateSerializer,
    }

    def _references(self, data: dict[str, Any]) -> dict[str, Any]:
        """The objects the ids of ``data`` name: 404 when the caller cannot see them (a CA is
        checked by the service: an organization may trust its manufacturer's CA, which it does
        not see)."""
        values = dict(data)
        if values.get("profile") is not None:
            profiles = DeviceProfile.objects.for_actor(self.actor, "view")
            values["profile"] = _visible(profiles.select_related("organization"), values["profile"])
        if "target_organization" in values:
            organizations = Organization.objects.for_actor(self.actor, "view")
            values["target_organization"] = _visible(organizations, values["target_organization"])
        if "authorities" in values:
            ids = set(values["authorities"])
            rows = CertificateAuthority.objects.select_related("organization").filter(pk__in=ids)
            found = list(rows)
            if len(found) != len(ids):
                raise exceptions.ValidationError(
                    {"authorities": ["Unknown or unverified certificate authority."]}
                )
            values["authorities"] = found
        return values

    def create_object(self, serializer: Any) -> EnrollmentPolicy:
        data = self._references(serializer.validated_data)
        organization = self.organization_for(data.pop("organization"))
        return enrollment_policies.policy_create(
            actor=self.actor, organization=organization, **data
        )

    def update_object(self, serializer: Any) -> EnrollmentPolicy:
        data = self._references(serializer.validated_data)
        policy = enrollment_policies.policy_update(
            actor=self.actor, policy=serializer.instance, **data
        )
        return self.get_queryset().get(pk=policy.pk)


def _visible(rows: QuerySet[Any], pk: Any) -> Any:
    found = rows.filter(pk=pk).first()
    if found is None:
        raise exceptions.NotFound()
    return found


def _created_by(request: Request) -> User | None:
    user = request.user
    return user if isinstance(user, User) else None


@extend_schema_view(
    create=extend_schema(
        request=ClaimTokenCreateSerializer, responses={201: ClaimTokenCreatedSerializer}
    )
)
class ClaimTokenViewSet(  # type: ignore[misc]
    ScopedViewSetMixin,
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    viewsets.GenericViewSet,
):
    """Claim tokens of enrollment policies; ``?policy=`` narrows the list."""

    queryset = ClaimToken.objects.all()
    serializer_class = ClaimTokenSerializer
    filterset_class = ClaimTokenFilter
    input_serializers = {"create": ClaimTokenCreateSerializer}

    def get_queryset(self) -> QuerySet[ClaimToken]:
        return super().get_queryset().order_by("-id")

    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        serializer = self.get_serializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        policy = (
            EnrollmentPolicy.objects.for_actor(self.actor, "view")
            .select_related("organization")
            .filter(pk=data.pop("policy"))
            .first()
        )
        if policy is None:
            raise exceptions.NotFound()
        self.require(policy, "add")
        with transaction.atomic():
            issued = enrollment_policies.claim_token_create(
                actor=self.actor, policy=policy, created_by=_created_by(request), **data
            )
            self.ensure_in_scope(issued.claim_token)
        claim_token = issued.claim_token
        claim_token.token = issued.token  # type: ignore[attr-defined]  # shown this once
        return Response(
            ClaimTokenCreatedSerializer(claim_token).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(
        summary="Revoke a claim token", request=None, responses={200: ClaimTokenSerializer}
    )
    @action(detail=True, methods=["post"], scope_action="delete")
    def revoke(self, request: Request, pk: Any = None) -> Response:
        claim_token = self.get_object()
        with transaction.atomic():
            claim_token = enrollment_policies.claim_token_revoke(
                actor=self.actor, claim_token=claim_token
            )
            self.ensure_in_scope(claim_token)
        return self.render(claim_token)
