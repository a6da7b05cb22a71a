"""Input and output shapes of the accounts API. No business rules: services hold them."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from apps.accounts.models import APIKey, Invitation, Membership, Organization, User
from apps.accounts.roles import Role
from apps.core.api.serializers import IdField

# --- output ------------------------------------------------------------------------------------


class UserSummarySerializer(serializers.ModelSerializer[User]):
    class Meta:
        model = User
        fields = ["id", "email", "full_name"]
        read_only_fields = fields


class OrganizationSerializer(serializers.ModelSerializer[Organization]):
    parent = serializers.UUIDField(  # type: ignore[assignment]  # not Field.parent
        source="parent_id", allow_null=True, read_only=True
    )

    class Meta:
        model = Organization
        fields = [
            "id",
            "name",
            "slug",
            "kind",
            "parent",
            "depth",
            "require_mfa",
            "is_active",
            "created_at",
        ]
        read_only_fields = fields


class MembershipSerializer(serializers.ModelSerializer[Membership]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    user = UserSummarySerializer(read_only=True)

    class Meta:
        model = Membership
        fields = ["id", "organization", "user", "role", "created_at", "updated_at"]
        read_only_fields = fields


class InvitationSerializer(serializers.ModelSerializer[Invitation]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    invited_by = UserSummarySerializer(read_only=True, allow_null=True)
    status = serializers.ChoiceField(
        choices=["pending", "accepted", "expired", "revoked"], read_only=True
    )

    class Meta:
        model = Invitation
        fields = [
            "id",
            "organization",
            "email",
            "role",
            "status",
            "invited_by",
            "expires_at",
            "accepted_at",
            "revoked_at",
            "created_at",
        ]
        read_only_fields = fields


class APIKeySerializer(serializers.ModelSerializer[APIKey]):
    organization = serializers.UUIDField(source="organization_id", read_only=True)
    created_by = UserSummarySerializer(read_only=True, allow_null=True)
    is_usable = serializers.BooleanField(read_only=True)

    class Meta:
        model = APIKey
        fields = [
            "id",
            "organization",
            "name",
            "role",
            "permissions",
            "prefix",
            "created_by",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "is_usable",
            "created_at",
        ]
        read_only_fields = fields


class APIKeyCreatedSerializer(APIKeySerializer):
    token = serializers.CharField(
        read_only=True, help_text="The secret, shown in this response only. Store it now."
    )

    class Meta(APIKeySerializer.Meta):
        fields = [*APIKeySerializer.Meta.fields, "token"]
        read_only_fields = fields


# --- input -------------------------------------------------------------------------------------


class OrganizationCreateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200)
    slug = serializers.SlugField(max_length=80, required=False, allow_blank=True, default="")
    kind = serializers.ChoiceField(
        choices=Organization.Kind.choices, default=Organization.Kind.CUSTOMER
    )
    parent = IdField(  # type: ignore[assignment]  # not Field.parent
        required=False,
        allow_null=True,
        default=None,
        help_text="Create below this organization; only platform staff create top-level ones.",
    )
    require_mfa = serializers.BooleanField(default=False)


class OrganizationUpdateSerializer(serializers.Serializer[Any]):
    name = serializers.CharField(max_length=200, required=False)
    slug = serializers.SlugField(max_length=80, required=False)
    kind = serializers.ChoiceField(choices=Organization.Kind.choices, required=False)
    require_mfa = serializers.BooleanField(required=False)
    is_active = serializers.BooleanField(
        required=False, help_text="Deactivate (or reactivate): needs organization.delete."
    )


class OrganizationMoveSerializer(serializers.Serializer[Any]):
    parent = IdField(help_text="The new parent organization.")  # type: ignore[assignment]


class MembershipCreateSerializer(serializers.Serializer[Any]):
    organization = IdField()
    email = serializers.EmailField(help_text="An existing user's email; invite anyone else.")
    role = serializers.ChoiceField(choices=Role.choices)


class MembershipUpdateSerializer(serializers.Serializer[Any]):
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationCreateSerializer(serializers.Serializer[Any]):
    organization = IdField()
    email = serializers.EmailField()
    role = serializers.ChoiceField(choices=Role.choices)


class InvitationAcceptSerializer(serializers.Serializer[Any]):
    token = serializers.CharField(max_length=200, help_text="The token from the emailed link.")


class APIKeyCreateSerializer(serializers.Serializer[Any]):
    organization = IdField()
    name = serializers.CharField(max_length=100)
    role = serializers.ChoiceField(choices=Role.choices)
    permissions = serializers.ListField(
        child=serializers.CharField(max_length=64),
        required=False,
        default=list,
        help_text="Narrow the key to these of its role's permissions.",
    )
    expires_at = serializers.DateTimeField(required=False, allow_null=True, default=None)
