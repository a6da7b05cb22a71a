"""Zero-touch enrollment (``POST /device/v1/enroll``): a device proves itself and gets its
identity, credentials and initial configuration.

``Enrollment.check()`` runs the cheap refusals outside any transaction (rate limits, the
timestamp window and the nonce, the proof: a claim token or a factory certificate). Then
``execute()`` runs in one transaction:

- the device is looked up by (manufacturer, serial): the manufacturer is the organization of
  the policy's profile (or of the profile the device names), else the policy organization's
  manufacturer;
- an unknown device is registered in the policy's target organization with its profile's latest
  version, ``active`` (provisioning applied) or quarantined as ``discovered`` (202, no
  credentials until someone approves it; the device polls);
- a known device must be inside the policy's organization and live: ``escrow`` devices are
  activated (through the lifecycle, so provisioning applies) or stay in escrow, as the policy
  says; a device already holding live credentials is refused unless it proves it is the same
  device: the factory certificate recorded at its first enrollment (a wiped device keeps its
  identity; its old operational credentials are revoked as superseded) or the very key of its
  current certificate (a retry after a lost answer gets that certificate again);
- a claim token spends one use per device (a quarantined device's polls and the pickup of its
  certificate after approval spend nothing more). The use is taken by the transaction's last
  statement (a conditional UPDATE, which alone enforces the limit): the token's row lock then
  lasts only for the commit, and the devices of one batch enroll concurrently.

A refusal rolls the attempt back and is then audited in its own transaction; every attempt is
counted by outcome (``enrollment_guard.count``).
"""

from __future__ import annotations

import uuid
from typing import Any, NoReturn

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import Q

from apps.accounts.models import Organization
from apps.core.actors import Actor, ActorKind, Grant
from apps.core.models import Event
from apps.profiles.models import DeviceProfile, ProfileVersion

from . import enrollment_guard as guard
from . import enrollment_proofs as proofs
from . import enrollment_records as records
from . import provisioning, services
from .choices import DeviceState, EscrowAction, FirstContact
from .enrollment_guard import Refused
from .enrollment_records import TOKEN, EnrollmentRequest, EnrollmentResult
from .models import ClaimToken, Device, DeviceCertificate
from .pki import issuance

REFUSED_STATES = frozenset(
    {DeviceState.SUSPENDED, DeviceState.DECOMMISSIONED, DeviceState.REPLACED}
)
ACTOR_PERMISSIONS = frozenset({"device.view", "device.add", "device.transition", "profile.view"})


class Enrollment:
    """One enrollment attempt: ``check()``, then ``execute()``; or ``run()`` for both plus the
    refusal's audit record and the outcome counter."""

    def __init__(self, request: EnrollmentRequest) -> None:
        self.request = request
        self.proof: proofs.Proof | None = None
        self.device: Device | None = None
        self.csr: Any = None
        self.spending: ClaimToken | None = None  # the claim token whose use is taken last

    # --- the two steps -------------------------------------------------------------------------

    def check(self) -> None:
        """The refusals that need no transaction: rate limits, the timestamp window and the
        nonce, then the proof (which finds the policy)."""
        request = self.request
        guard.limit_source(request.source)
        guard.limit_token(
            proofs.rate_key(
                claim_token=request.claim_token, factory_certificate=request.factory_certificate
            )
        )
        guard.check_fresh(request.timestamp, request.nonce)
        self.proof = self._prove()
        if request.credential == TOKEN and not self.proof.policy.allow_token_credentials:
            raise ValidationError(
                {"credential": "This enrollment policy does not allow token credentials."}
            )

    def execute(self) -> EnrollmentResult:
        """Match or register the device and give it what the policy says, in one transaction."""
        if self.proof is None:
            raise RuntimeError("check() first")
        with transaction.atomic():
            profile = self._profile()
            manufacturer_id = profile.organization_id if profile else self._manufacturer().pk
            self.device = (
                Device.objects.select_for_update(of=("self",))
                .select_related("organization")
                .filter(manufacturer_id=manufacturer_id, serial=self.request.serial)
                .first()
            )
            device = self.device
            result = self._register(profile) if device is None else self._known(device)
            if self.spending is not None:  # last: its row lock then lasts only for the commit
                proofs.consume(self.spending)
            return result

    def run(self) -> EnrollmentResult:
        """``check()`` then ``execute()``; a refusal is audited and counted, then re-raised."""
        try:
            self.check()
            result = self.execute()
        except (Refused, ValidationError) as error:
            records.refusal(self, error)
            raise
        guard.count(result.outcome)
        return result

    def reject_input(self, error: ValidationError) -> NoReturn:
        """Refuse a request that did not parse: still rate-limited per source, audited and
        counted like any other attempt."""
        try:
            guard.limit_source(self.request.source)
        except Refused as refused:
            records.refusal(self, refused)
            raise
        records.refusal(self, error)
        raise error

    # --- proof ---------------------------------------------------------------------------------

    def _prove(self) -> proofs.Proof:
        request = self.request
        if request.claim_token:
            return proofs.claim_token_proof(request.claim_token)
        signed = proofs.signing_string(
            serial=request.serial,
            nonce=request.nonce,
            timestamp=request.timestamp_raw,
            csr=request.csr,
        )
        return proofs.factory_proof(
            chain_pem=request.factory_certificate,
            signature=request.factory_signature,
            serial=request.serial,
            signed=signed,
            profile_hint=request.profile,
        )

    @property
    def policy(self) -> Any:
        return self.proof.policy if self.proof else None

    def actor(self) -> Actor:
        """The enrolling device, acting with just what enrollment needs, on the policy's
        organization (its subtree, and the profiles shared down to it)."""
        policy = self.policy
        grant = Grant(
            organization_id=policy.organization_id,
            organization_path=policy.organization.path,
            permissions=ACTOR_PERMISSIONS,
        )
        return Actor(
            kind=ActorKind.DEVICE,
            label=f"device {self.request.serial} (enrollment)"[:255],
            grants=(grant,),
            device_id=self.device.pk if self.device else None,
            source="device",
        )

    # --- which profile, which manufacturer -----------------------------------------------------

    def _profile(self) -> DeviceProfile | None:
        policy = self.policy
        if policy.profile is not None:
            return policy.profile  # type: ignore[no-any-return]
        hint = self.request.profile
        if not hint:
            return None
        usable = DeviceProfile.objects.select_related("organization").filter(
            organization_id__in=_path_ids(policy.target_organization)
        )
        condition = Q(pk=hint) | Q(slug=hint) if _is_uuid(hint) else Q(slug=hint)
        found = usable.filter(condition).order_by("-organization__depth").first()
        if found is None:
            raise ValidationError({"profile": "Unknown profile for this enrollment policy."})
        return found

    def _manufacturer(self) -> Organization:
        """The policy organization's manufacturer: the nearest one on its path (itself when it
        has none above)."""
        organization: Organization = self.policy.organization
        nearest = (
            Organization.objects.filter(
                pk__in=_path_ids(organization), kind=Organization.Kind.MANUFACTURER
            )
            .order_by("-depth")
            .first()
        )
        return nearest or organization

    # --- an unknown device ---------------------------------------------------------------------

    def _register(self, profile: DeviceProfile | None) -> EnrollmentResult:
        policy = self.policy
        if profile is None:
            raise ValidationError({"profile": "Required: this enrollment policy names no profile."})
        self._load_csr()
        records.check_factory_certificate(self, None)
        self._spend()
        quarantine = policy.first_contact == FirstContact.QUARANTINE
        self.device = services.device_register(
            actor=self.actor(),
            organization=policy.target_organization,
            profile_version=ProfileVersion.objects.get(
                profile=profile, number=profile.latest_number
            ),
            serial=self.request.serial,
            state=DeviceState.DISCOVERED if quarantine else DeviceState.ACTIVE,
        )
        device = self.device
        records.factory_certificate(self, device)
        if quarantine:
            records.inventory(self, device)
            return records.quarantined(self, device)
        # Registered active: provisioning is applied now (what the lifecycle's activation hook
        # would record), in the same UPDATE as the reported inventory. The device row, its
        # organization and profile version are the ones just written and read.
        applied = provisioning.on_activation(
            device.organization, device.profile_version, transition="enroll"
        )
        records.inventory(self, device, provisioning=applied)
        return self._issue(device, status=201, outcome="registered")

    # --- a known device ------------------------------------------------------------------------

    def _known(self, device: Device) -> EnrollmentResult:
        policy = self.policy
        if not device.organization.path.startswith(policy.organization.path):
            raise Refused(
                403,
                "device_elsewhere",
                "This serial number is registered to an organization this enrollment policy "
                "does not cover.",
                field="serial",
            )
        if device.state in REFUSED_STATES:
            raise Refused(403, "device_refused", f"The device is {device.state}; it cannot enroll.")
        same_factory = records.check_factory_certificate(self, device)
        if device.state == DeviceState.DISCOVERED:
            return records.pending(self, device)
        self._load_csr(device)
        repeated, live = records.live_credentials(device, self.csr)
        if repeated is not None:
            return self._repeat(device, repeated)
        if live and not same_factory:
            raise Refused(
                403,
                "already_enrolled",
                "The device is already enrolled. To enroll it again, an operator must first "
                "revoke its credentials (or it re-enrolls with the factory certificate it "
                "enrolled with).",
            )
        claim_token = self.proof.claim_token if self.proof else None
        # live credentials mean it had some: not a first pickup after quarantine
        if live or not _picks_up_after_quarantine(device, claim_token):
            self._spend()
        device = self._activate_escrow(device)
        if live:
            records.supersede_credentials(device)
        records.factory_certificate(self, device)
        records.inventory(self, device)
        outcome = "reenrolled" if live else "enrolled"
        return self._issue(device, status=200, outcome=outcome)

    def _activate_escrow(self, device: Device) -> Device:
        """The escrow device activated when the policy says so; re-read after the transition,
        whose hooks (provisioning) write set-based."""
        if device.state != DeviceState.ESCROW or self.policy.escrow_action != EscrowAction.ACTIVATE:
            return device
        try:
            with transaction.atomic():
                services.device_transition(
                    actor=self.actor(), device=device, transition="activate", reason="enrollment"
                )
        except ValidationError:  # a guard holds it (a pending transfer): it stays in escrow
            return device
        return _reload(device)

    def _repeat(self, device: Device, certificate: DeviceCertificate) -> EnrollmentResult:
        """The device retries with the key of its current certificate (it lost our answer):
        the same certificate again, nothing spent."""
        result = EnrollmentResult(
            device=device,
            status=200,
            outcome="repeated",
            certificate=certificate,
            chain_pem=records.chain_for(certificate),
            provisioning=records.provisioning_of(device),
        )
        records.success(self, result)
        return result

    # --- shared steps --------------------------------------------------------------------------

    def _load_csr(self, device: Device | None = None) -> None:
        if self.request.credential == TOKEN:
            return
        names = (self.request.serial, str(device.pk)) if device else (self.request.serial,)
        self.csr = issuance.load_csr(self.request.csr, expected_names=names)

    def _spend(self) -> None:
        """Spend one use of the claim token: refused here when it had none left (the usual
        place of that refusal), taken at the end of ``execute`` (``proofs.consume``)."""
        if self.proof is not None and self.proof.claim_token is not None:
            proofs.has_uses_left(self.proof.claim_token)
            self.spending = self.proof.claim_token

    def _issue(self, device: Device, *, status: int, outcome: str) -> EnrollmentResult:
        issued, token = records.credentials(self, device)
        result = EnrollmentResult(
            device=device,
            status=status,
            outcome=outcome,
            certificate=issued.row if issued else None,
            chain_pem=issued.chain_pem if issued else "",
            token=token,
            provisioning=records.provisioning_of(device),
            root_pem=issued.root_pem if issued else "",
        )
        records.success(self, result)
        return result


def enroll(request: EnrollmentRequest) -> EnrollmentResult:
    """Run one enrollment attempt (``Enrollment.run``)."""
    return Enrollment(request).run()


def _reload(device: Device) -> Device:
    return Device.objects.select_related("organization", "profile_version__profile").get(
        pk=device.pk
    )


def _path_ids(organization: Organization) -> list[str]:
    return [segment for segment in organization.path.split("/") if segment]


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


def _picks_up_after_quarantine(device: Device, claim_token: ClaimToken | None) -> bool:
    """A device quarantined by this claim token, now approved, collecting its first
    credentials: the token's use was spent when it registered the device."""
    if claim_token is None:
        return False
    quarantined = Event.objects.filter(
        subject_type="devices.device",
        subject_id=str(device.pk),
        type="device.discovered",
        payload__claim_token=claim_token.prefix,
    ).exists()
    return quarantined and not records.ever_had_credentials(device)
