"""Portal forms of zero-touch provisioning: input parsing and choices only; the services in
``enrollment_policies`` enforce the rules."""

from __future__ import annotations

from typing import Any

from django import forms
from django.db.models import Q

from apps.accounts.forms import PORTAL_INPUT, PortalForm
from apps.accounts.models import Organization
from apps.accounts.portal import visible_organizations
from apps.core.actors import Actor
from apps.profiles.selectors import profile_catalog

from .choices import AuthorityKind, EnrollmentMethod, EscrowAction, FirstContact
from .models import CertificateAuthority, EnrollmentPolicy

CHOICES_LIMIT = 200


def usable_authorities(organization: Organization) -> Any:
    """Verified registered CAs a policy of ``organization`` may trust: owned on its path or
    below it."""
    ancestors = [segment for segment in organization.path.split("/") if segment]
    return (
        CertificateAuthority.objects.filter(
            kind=AuthorityKind.EXTERNAL, verified_at__isnull=False, revoked_at=None
        )
        .filter(
            Q(organization_id__in=ancestors) | Q(organization__path__startswith=organization.path)
        )
        .select_related("organization")
        .order_by("name", "id")
    )


class PolicyForm(PortalForm):
    name = forms.CharField(max_length=200, widget=forms.TextInput(attrs=PORTAL_INPUT))
    method = forms.ChoiceField(
        label="Proof", choices=EnrollmentMethod.choices, widget=forms.RadioSelect
    )
    profile = forms.ChoiceField(
        required=False,
        widget=forms.Select(attrs=PORTAL_INPUT),
        help_text="Empty: any profile; the device names its own.",
    )
    target_organization = forms.ChoiceField(
        label="Devices land in",
        widget=forms.Select(attrs=PORTAL_INPUT),
        help_text="Unknown devices are registered here.",
    )
    first_contact = forms.ChoiceField(
        choices=FirstContact.choices, initial=FirstContact.ACTIVATE, widget=forms.RadioSelect
    )
    escrow_action = forms.ChoiceField(
        label="Pre-registered devices in escrow",
        choices=EscrowAction.choices,
        initial=EscrowAction.ACTIVATE,
        widget=forms.RadioSelect,
    )
    authorities = forms.MultipleChoiceField(
        label="Trusted factory CAs",
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="Registered CAs whose factory certificates this policy accepts.",
    )
    allow_token_credentials = forms.BooleanField(
        required=False, label="Allow token credentials (devices without TLS client auth)"
    )
    enabled = forms.BooleanField(required=False, initial=True)

    def limit(self, actor: Actor, organization: Organization) -> None:
        """Offer what ``organization``'s policy can name: its catalog's profiles, its subtree's
        organizations, the CAs it may trust."""
        self.organization = organization
        profiles = profile_catalog(actor=actor, organization=organization)[:CHOICES_LIMIT]
        self._profiles = {str(profile.pk): profile for profile in profiles}
        self.fields["profile"].choices = [("", "Any profile")] + [  # type: ignore[attr-defined]
            (pk, f"{profile.name} ({profile.organization.name})")
            for pk, profile in self._profiles.items()
        ]
        subtree = visible_organizations(actor).filter(path__startswith=organization.path)
        self._organizations = {str(org.pk): org for org in subtree.order_by("path")[:CHOICES_LIMIT]}
        self.fields["target_organization"].choices = [  # type: ignore[attr-defined]
            (pk, org.name) for pk, org in self._organizations.items()
        ]
        self._authorities = {str(ca.pk): ca for ca in usable_authorities(organization)}
        self.fields["authorities"].choices = [  # type: ignore[attr-defined]
            (pk, f"{ca.name} ({ca.organization.name if ca.organization else ''})")
            for pk, ca in self._authorities.items()
        ]

    @classmethod
    def initial_for(cls, policy: EnrollmentPolicy) -> dict[str, Any]:
        return {
            "name": policy.name,
            "method": policy.method,
            "profile": str(policy.profile_id) if policy.profile_id else "",
            "target_organization": str(policy.target_organization_id),
            "first_contact": policy.first_contact,
            "escrow_action": policy.escrow_action,
            "authorities": [str(pk) for pk in policy.authorities.values_list("pk", flat=True)],
            "allow_token_credentials": policy.allow_token_credentials,
            "enabled": policy.enabled,
        }

    def service_fields(self) -> dict[str, Any]:
        data = dict(self.cleaned_data)
        data["profile"] = self._profiles.get(data["profile"]) if data["profile"] else None
        data["target_organization"] = self._organizations[data["target_organization"]]
        data["authorities"] = [self._authorities[pk] for pk in data["authorities"]]
        return data


class ClaimTokenForm(PortalForm):
    label = forms.CharField(
        max_length=100,
        required=False,
        widget=forms.TextInput(attrs=PORTAL_INPUT),
        help_text="e.g. the production run it is printed into.",
    )
    valid_days = forms.IntegerField(
        label="Valid for (days)",
        min_value=1,
        max_value=3650,
        initial=30,
        widget=forms.NumberInput(attrs=PORTAL_INPUT),
    )
    max_uses = forms.IntegerField(
        label="Devices it may enroll",
        min_value=1,
        max_value=1_000_000,
        initial=100,
        widget=forms.NumberInput(attrs=PORTAL_INPUT),
    )
