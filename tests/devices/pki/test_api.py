"""The PKI API: the authorization matrix on every endpoint, exact bodies, one-time tokens."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from apps.accounts.roles import Role
from apps.core.actors import SYSTEM
from apps.devices.models_pki import CertificateAuthority, DeviceCertificate, DeviceToken
from apps.devices.pki import certs, external, services
from tests.authz import Call, Case, assert_authz_matrix, error, iso, last_audit
from tests.factories import make_member

from .support import certificate, fleet_device, issue, make_ca, pem, register_ca

pytestmark = pytest.mark.django_db

VIEWERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR, Role.APPROVER, Role.TECHNICIAN, Role.VIEWER}
CA_ADMINS = {Role.OWNER, Role.ADMIN}
CREDENTIAL_WRITERS = {Role.OWNER, Role.ADMIN, Role.OPERATOR}
CAS = "/api/v1/certificate-authorities/"
CERTIFICATES = "/api/v1/device-certificates/"
TOKENS = "/api/v1/device-tokens/"


def client_for(organization, role: str) -> APIClient:
    client = APIClient()
    client.force_login(make_member(organization, role))
    return client


def matrix(world, **fields: Any) -> None:
    assert_authz_matrix(world, Case(**fields))


def ca_json(authority: CertificateAuthority) -> dict[str, Any]:
    authority.refresh_from_db()
    certified = bool(authority.certificate_pem)
    pending = external.is_pending(authority)
    return {
        "id": str(authority.pk),
        "organization": str(authority.organization_id),
        "kind": authority.kind,
        "name": authority.name,
        "status": external.authority_status(authority),
        "parent": str(authority.parent_id) if authority.parent_id else None,
        "subject": authority.subject if certified else None,
        "fingerprint": authority.fingerprint if certified else None,
        "subject_key_identifier": authority.subject_key_identifier,
        "not_before": iso(authority.not_before) if certified else None,
        "not_after": iso(authority.not_after) if certified else None,
        "verified_at": iso(authority.verified_at),
        "revoked_at": iso(authority.revoked_at),
        "crl_number": authority.crl_number,
        "crl_updated_at": iso(authority.crl_updated_at),
        "certificate_pem": authority.certificate_pem or None,
        "registration_code": authority.verification_code if pending else None,
        "registration_expires_at": (
            iso(external.registration_expires_at(authority)) if pending else None
        ),
        "created_at": iso(authority.created_at),
    }


def certificate_json(row: DeviceCertificate) -> dict[str, Any]:
    row.refresh_from_db()
    return {
        "id": str(row.pk),
        "device": str(row.device_id),
        "issuer": str(row.issuer_id),
        "kind": row.kind,
        "status": row.status,
        "serial_number": row.serial_number,
        "fingerprint": row.fingerprint,
        "subject": row.subject,
        "not_before": iso(row.not_before),
        "not_after": iso(row.not_after),
        "key_algorithm": row.key_algorithm,
        "key_size": row.key_size,
        "signature_hash": row.signature_hash,
        "revoked_at": iso(row.revoked_at),
        "revocation_reason": row.revocation_reason,
        "last_seen_at": iso(row.last_seen_at),
        "certificate_pem": row.certificate_pem,
        "created_at": iso(row.created_at),
    }


def token_json(row: DeviceToken) -> dict[str, Any]:
    row.refresh_from_db()
    return {
        "id": str(row.pk),
        "device": str(row.device_id),
        "prefix": row.prefix,
        "label": row.label,
        "status": services.token_status(row),
        "created_by": str(row.created_by_id) if row.created_by_id else None,
        "expires_at": iso(row.expires_at),
        "revoked_at": iso(row.revoked_at),
        "last_used_at": iso(row.last_used_at),
        "created_at": iso(row.created_at),
    }


def pending_ca(world) -> CertificateAuthority:
    return external.registration_start(actor=SYSTEM, organization=world.tree["acme"], name="F")


def retail_certificate(world) -> DeviceCertificate:
    return issue(fleet_device(world.tree["retail"]))


def retail_token(world) -> DeviceToken:
    device = fleet_device(world.tree["retail"])
    return services.device_token_create(actor=SYSTEM, device=device, label="modem")[0]


# --- certificate authorities -------------------------------------------------------------------


def test_ca_list_matrix(authz_world):
    matrix(
        authz_world,
        permission="certificateauthority.view",
        allowed=VIEWERS,
        setup=pending_ca,
        request=lambda a: Call("get", CAS, {"kind": "external"}),
        expect=lambda a, r: r.json()["results"] == [ca_json(a.target)] or pytest.fail(),
        listing=True,
    )


def test_ca_retrieve_matrix(authz_world):
    matrix(
        authz_world,
        permission="certificateauthority.view",
        allowed=VIEWERS,
        setup=lambda world: register_ca(world.tree["acme"], make_ca()),
        request=lambda a: Call("get", f"{CAS}{a.target.pk}/"),
        expect=lambda a, r: r.json() == ca_json(a.target) or pytest.fail(),
    )


def test_ca_registration_start_matrix(authz_world):
    def expect(attempt, response):
        authority = CertificateAuthority.objects.get(name="Factory CA")
        assert response.json() == ca_json(authority)
        assert (authority.organization_id, external.authority_status(authority)) == (
            attempt.world.home.pk,
            "pending",
        )
        audit = last_audit("certificateauthority.registration_start")
        assert audit.actor_label == attempt.principal.label

    matrix(
        authz_world,
        permission="certificateauthority.add",
        allowed=CA_ADMINS,
        request=lambda a: Call(
            "post", CAS, {"organization": str(a.world.home.pk), "name": "Factory CA"}
        ),
        status=201,
        state=lambda a: CertificateAuthority.objects.count(),
        expect=expect,
    )


def test_ca_verify_matrix(authz_world):
    def setup(world):
        pending = pending_ca(world)
        ca = make_ca()
        proof, _ = certificate(pending.verification_code, issuer=ca)
        return pending, ca, proof

    def expect(attempt, response):
        pending, ca, _ = attempt.target
        assert response.json() == ca_json(pending)
        assert response.json()["fingerprint"] == certs.fingerprint(ca[0])
        assert response.json()["status"] == "active"
        assert last_audit("certificateauthority.register").actor_label == attempt.principal.label

    matrix(
        authz_world,
        permission="certificateauthority.add",
        allowed=CA_ADMINS,
        setup=setup,
        request=lambda a: Call(
            "post",
            f"{CAS}{a.target[0].pk}/verify/",
            {"certificate": pem(a.target[1][0]), "verification_certificate": pem(a.target[2])},
        ),
        state=lambda a: (
            CertificateAuthority.objects.filter(pk=a.target[0].pk)
            .values_list("verified_at", "certificate_pem")
            .get()
        ),
        expect=expect,
    )


def test_ca_revoke_matrix(authz_world):
    matrix(
        authz_world,
        permission="certificateauthority.delete",
        allowed=CA_ADMINS,
        setup=lambda world: register_ca(world.tree["acme"], make_ca()),
        request=lambda a: Call("post", f"{CAS}{a.target.pk}/revoke/", {"reason": "retired"}),
        state=lambda a: CertificateAuthority.objects.get(pk=a.target.pk).revoked_at,
        expect=lambda a, r: (
            (r.json() == ca_json(a.target) and r.json()["status"] == "revoked") or pytest.fail()
        ),
    )


def test_a_refused_verification_names_the_field_and_changes_nothing(tree):
    client = client_for(tree["acme"], Role.ADMIN)
    pending = external.registration_start(actor=SYSTEM, organization=tree["acme"], name="F")
    leaf, _ = certificate("not a CA", ca=False)
    response = client.post(
        f"{CAS}{pending.pk}/verify/",
        {"certificate": pem(leaf), "verification_certificate": pem(leaf)},
        format="json",
    )
    assert response.status_code == 400
    assert error(response)["fields"] == {
        "certificate": ["Not a CA certificate: its basic constraints say CA:FALSE."]
    }
    assert ca_json(pending)["status"] == "pending"


def test_the_root_is_visible_to_platform_staff_only(tree):
    root = issue(fleet_device(tree["retail"])).issuer.parent
    client = client_for(tree["acme"], Role.OWNER)
    assert client.get(f"{CAS}{root.pk}/").status_code == 404
    listed = client.get(CAS).json()["results"]
    assert [row["kind"] for row in listed] == ["intermediate"]


# --- device certificates -----------------------------------------------------------------------


def test_certificate_list_matrix(authz_world):
    matrix(
        authz_world,
        permission="credential.view",
        allowed=VIEWERS,
        setup=retail_certificate,
        request=lambda a: Call(
            "get",
            CERTIFICATES,
            {"device": str(a.target.device_id), "status": "active", "kind": "operational"},
        ),
        expect=lambda a, r: r.json()["results"] == [certificate_json(a.target)] or pytest.fail(),
        listing=True,
    )


def test_certificate_retrieve_matrix(authz_world):
    matrix(
        authz_world,
        permission="credential.view",
        allowed=VIEWERS,
        setup=retail_certificate,
        request=lambda a: Call("get", f"{CERTIFICATES}{a.target.pk}/"),
        expect=lambda a, r: r.json() == certificate_json(a.target) or pytest.fail(),
    )


def test_certificate_revoke_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == certificate_json(attempt.target)
        assert (attempt.target.status, attempt.target.revocation_reason) == (
            "revoked",
            "key_compromise",
        )
        assert last_audit("device.certificate_revoke").actor_label == attempt.principal.label

    matrix(
        authz_world,
        permission="credential.delete",
        allowed=CREDENTIAL_WRITERS,
        setup=retail_certificate,
        request=lambda a: Call(
            "post", f"{CERTIFICATES}{a.target.pk}/revoke/", {"reason": "key_compromise"}
        ),
        state=lambda a: DeviceCertificate.objects.get(pk=a.target.pk).status,
        expect=expect,
    )


def test_the_certificate_list_costs_the_same_for_2_or_20_rows(tree, django_assert_num_queries):
    device = fleet_device(tree["retail"])
    for _ in range(2):
        issue(device)
    client = client_for(tree["acme"], Role.VIEWER)
    with django_assert_num_queries(4):  # session, user, memberships, one page
        assert len(client.get(CERTIFICATES).json()["results"]) == 2
    for _ in range(18):
        issue(device)
    with django_assert_num_queries(4):
        assert len(client.get(CERTIFICATES).json()["results"]) == 20


# --- device tokens -----------------------------------------------------------------------------


def test_token_create_matrix(authz_world):
    def expect(attempt, response):
        row = DeviceToken.objects.get()
        body = response.json()
        token = body.pop("token")
        assert body == token_json(row)
        assert token.startswith(f"fo_dev_{row.prefix}_")
        assert services.authenticate_token(token).pk == row.pk
        assert (row.label, row.device_id) == ("gateway", attempt.target.pk)
        assert last_audit("device.token_create").actor_label == attempt.principal.label

    matrix(
        authz_world,
        permission="credential.add",
        allowed=CREDENTIAL_WRITERS,
        setup=lambda world: fleet_device(world.tree["retail"]),
        request=lambda a: Call("post", TOKENS, {"device": str(a.target.pk), "label": "gateway"}),
        status=201,
        state=lambda a: DeviceToken.objects.count(),
        expect=expect,
    )


def test_token_list_matrix(authz_world):
    def expect(attempt, response):
        assert response.json()["results"] == [token_json(attempt.target)]
        assert "token" not in response.json()["results"][0]

    matrix(
        authz_world,
        permission="credential.view",
        allowed=VIEWERS,
        setup=retail_token,
        request=lambda a: Call("get", TOKENS, {"device": str(a.target.device_id)}),
        expect=expect,
        listing=True,
    )


def test_token_retrieve_matrix(authz_world):
    matrix(
        authz_world,
        permission="credential.view",
        allowed=VIEWERS,
        setup=retail_token,
        request=lambda a: Call("get", f"{TOKENS}{a.target.pk}/"),
        expect=lambda a, r: r.json() == token_json(a.target) or pytest.fail(),
    )


def test_token_revoke_matrix(authz_world):
    def expect(attempt, response):
        assert response.json() == token_json(attempt.target)
        assert response.json()["status"] == "revoked"

    matrix(
        authz_world,
        permission="credential.delete",
        allowed=CREDENTIAL_WRITERS,
        setup=retail_token,
        request=lambda a: Call("post", f"{TOKENS}{a.target.pk}/revoke/"),
        state=lambda a: DeviceToken.objects.get(pk=a.target.pk).revoked_at,
        expect=expect,
    )


# --- audit and per-device revocation -----------------------------------------------------------


def test_audit_list_matrix(authz_world):
    def setup(world):
        row = retail_certificate(world)
        DeviceCertificate.objects.filter(pk=row.pk).update(
            not_after=row.not_after.replace(year=2000)
        )
        return row

    def expect(attempt, response):
        row = attempt.target
        row.refresh_from_db()
        assert response.json() == {
            "results": [
                {
                    "kind": "expiring",
                    "certificate_id": str(row.pk),
                    "device_id": str(row.device_id),
                    "organization_id": str(attempt.world.tree["retail"].pk),
                    "serial": "SN-1",
                    "detail": f"Expired on {row.not_after:%Y-%m-%d} and was not renewed.",
                }
            ],
            "counts": {"expiring": 1, "aged": 0, "revoked_seen": 0, "shared": 0, "weak_key": 0},
        }

    matrix(
        authz_world,
        permission="credential.view",
        allowed=VIEWERS,
        setup=setup,
        request=lambda a: Call("get", "/api/v1/certificate-audit/", {"kind": "expiring"}),
        expect=expect,
        listing=True,
    )


def test_device_credentials_revoke_matrix(authz_world):
    def setup(world):
        row = retail_certificate(world)
        services.device_token_create(actor=SYSTEM, device=row.device)
        return row.device

    def expect(attempt, response):
        assert response.json() == {
            "device": str(attempt.target.pk),
            "certificates": 1,
            "tokens": 1,
        }
        assert last_audit("device.credentials_revoke").changes == {
            "reason": "cessation_of_operation",
            "certificates": 1,
            "tokens": 1,
        }

    def state(attempt):
        certificates = DeviceCertificate.objects.filter(device=attempt.target)
        return list(certificates.values_list("status", flat=True)) + list(
            DeviceToken.objects.filter(device=attempt.target).values_list("revoked_at", flat=True)
        )

    matrix(
        authz_world,
        permission="credential.delete",
        allowed=CREDENTIAL_WRITERS,
        setup=setup,
        request=lambda a: Call(
            "post",
            f"/api/v1/devices/{a.target.pk}/credentials/revoke/",
            {"reason": "cessation_of_operation"},
        ),
        state=state,
        expect=expect,
    )


def test_a_malformed_device_id_is_not_found(tree):
    client = client_for(tree["acme"], Role.OWNER)
    response = client.post("/api/v1/devices/nope/credentials/revoke/", {}, format="json")
    assert (response.status_code, error(response)["code"]) == (404, "not_found")
