"""Device credentials as the rest of the registry sees them: revoked when the lifecycle says so."""

from __future__ import annotations

import uuid

from apps.core.actors import Actor

from .pki import revocation

REASON_BY_TRANSITION = {
    "decommission": "decommissioned",
    "reject": "cessation_of_operation",
    "replace": "replaced",
}


def revoke_on_transition(*, device_ids: list[uuid.UUID], actor: Actor, transition: str) -> None:
    """Lifecycle hook (decommission, reject; replacement calls it too): every certificate and
    token of the devices that moved is revoked in the same transaction; the broker refuses them
    after its next sync."""
    revocation.revoke_for_devices(device_ids, REASON_BY_TRANSITION.get(transition, transition))
