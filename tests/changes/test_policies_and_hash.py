"""Policy resolution (profile-specific -> own -> nearest ancestor -> default) and its rules as
tables; the content hash's stability."""

from __future__ import annotations

import hashlib
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from apps.changes.choices import CommandThreshold
from apps.changes.content import content_hash
from apps.changes.kinds import Facts
from apps.changes.models import ApprovalPolicy, ChangeRequest
from apps.changes.policies import DEFAULT, applicable_policy, required_approvals

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("policies", "organization", "with_profile", "expected"),
    [
        ([], "store", True, "Default"),
        ([("acme", False)], "store", True, "acme"),
        ([("acme", False), ("retail", False)], "store", True, "retail"),
        ([("acme", False), ("retail", False), ("store", False)], "store", True, "store"),
        ([("acme", True), ("store", False)], "store", True, "store"),  # own beats ancestor's
        ([("store", True), ("store", False)], "store", True, "store+profile"),
        ([("store", True), ("store", False)], "store", False, "store"),
        ([("retail", True), ("acme", False)], "store", True, "retail+profile"),
        ([("retail", True), ("retail", False)], "store", True, "retail+profile"),
        ([("globex", False)], "store", True, "Default"),  # a sibling's never applies
        ([("hospital", False)], "store", True, "Default"),
    ],
)
def test_the_most_specific_policy_applies(
    tree, version, policies, organization, with_profile, expected
):
    profile = version.profile
    for owner, for_profile in policies:
        name = f"{owner}+profile" if for_profile else owner
        ApprovalPolicy.objects.create(
            organization=tree[owner], profile=profile if for_profile else None, name=name
        )
    policy = applicable_policy(
        organization=tree[organization], profile_id=profile.pk if with_profile else None
    )
    assert policy.name == expected


def _request(tree: dict[str, Any], kind: str) -> ChangeRequest:
    return ChangeRequest(organization=tree["acme"], kind=kind)


@pytest.mark.parametrize(
    ("policy", "kind", "facts", "devices", "expected"),
    [
        # the default: critical commands and schema-critical configuration need one approval
        (None, "command", Facts(criticality="normal"), 10_000, (0, "")),
        (
            None,
            "command",
            Facts(criticality="critical"),
            1,
            (1, "critical command (policy Default)"),
        ),
        (None, "configuration", Facts(configuration_keys=frozenset({"log.level"})), 1, (0, "")),
        (
            None,
            "configuration",
            Facts(
                configuration_keys=frozenset({"tls.ca"}),
                critical_configuration_keys=frozenset({"tls.ca"}),
            ),
            1,
            (1, "critical configuration keys: tls.ca (policy Default)"),
        ),
        # an organization's own rules
        (
            {"command_threshold": CommandThreshold.NORMAL},
            "command",
            Facts(criticality="normal"),
            1,
            (1, "every command needs approval (policy p)"),
        ),
        (
            {"command_threshold": CommandThreshold.NEVER},
            "command",
            Facts(criticality="critical"),
            1,
            (0, ""),
        ),
        (
            {"command_threshold": CommandThreshold.NEVER, "device_threshold": 100},
            "command",
            Facts(criticality="critical"),
            100,
            (0, ""),
        ),
        (
            {
                "command_threshold": CommandThreshold.NEVER,
                "device_threshold": 100,
                "approvals_required": 2,
            },
            "command",
            Facts(criticality="normal"),
            101,
            (2, "101 devices (more than 100) (policy p)"),
        ),
        (
            {"configuration_always": True},
            "configuration",
            Facts(),
            1,
            (1, "every configuration change needs approval (policy p)"),
        ),
        (
            {"configuration_critical_keys": ["network"]},
            "configuration",
            Facts(configuration_keys=frozenset({"network.apn", "log.level"})),
            1,
            (1, "critical configuration keys: network.apn (policy p)"),
        ),
        (
            {"configuration_critical_keys": ["network.apn"]},
            "configuration",
            Facts(configuration_keys=frozenset({"network"})),
            1,
            (1, "critical configuration keys: network (policy p)"),
        ),
        (
            {"configuration_critical_keys": ["network"]},
            "configuration",
            Facts(configuration_keys=frozenset({"networking"})),
            1,
            (0, ""),
        ),
        (
            {"command_threshold": CommandThreshold.CRITICAL, "device_threshold": 5},
            "command",
            Facts(criticality="critical"),
            6,
            (1, "critical command; 6 devices (more than 5) (policy p)"),
        ),
    ],
)
def test_required_approvals(tree, policy, kind, facts, devices, expected):
    if policy is not None:
        ApprovalPolicy.objects.create(organization=tree["acme"], name="p", **policy)
    assert required_approvals(_request(tree, kind), facts, devices) == expected


def test_the_strictest_profile_policy_holds_across_profiles(tree, version):
    other = uuid.uuid4()
    ApprovalPolicy.objects.create(
        organization=tree["acme"],
        profile=version.profile,
        name="strict",
        approvals_required=3,
        command_threshold=CommandThreshold.NORMAL,
    )
    facts = Facts(criticality="normal", profile_ids=frozenset({version.profile.pk, other}))
    assert required_approvals(_request(tree, "command"), facts, 1) == (
        3,
        "every command needs approval (policy strict)",
    )


def test_the_default_policy():
    assert (DEFAULT.command_threshold, DEFAULT.device_threshold, DEFAULT.approvals_required) == (
        "critical",
        None,
        1,
    )


# --- the content hash --------------------------------------------------------------------------

MOMENT = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)


def _hashed(**overrides: Any) -> ChangeRequest:
    fields: dict[str, Any] = {
        "kind": "command",
        "title": "t",
        "spec": {"b": 1, "a": [1, 2]},
        "target": {"filter": {"tags_any": ["x"]}},
        "resolve_at": "execution",
        "run_at": None,
        "window": None,
        "expires_at": MOMENT,
    }
    fields.update(overrides)
    return ChangeRequest(**fields)


def test_the_hash_is_sha256_of_the_canonical_json():
    canonical = (
        '{"expires_at":"2026-12-01T08:00:00+00:00","kind":"command","resolve_at":"execution",'
        '"run_at":null,"spec":{"a":[1,2],"b":1},"target":{"filter":{"tags_any":["x"]}},'
        '"window":null}'
    )
    assert content_hash(_hashed()) == hashlib.sha256(canonical.encode()).hexdigest()
    assert json.loads(canonical)["spec"] == {"a": [1, 2], "b": 1}


def test_the_hash_ignores_key_order_titles_and_descriptions():
    base = content_hash(_hashed())
    assert content_hash(_hashed(spec={"a": [1, 2], "b": 1})) == base
    assert content_hash(_hashed(title="other", description="words")) == base


@pytest.mark.parametrize(
    "change",
    [
        {"kind": "configuration"},
        {"spec": {"b": 2, "a": [1, 2]}},
        {"spec": {"b": 1, "a": [2, 1]}},
        {"target": {"filter": {"tags_any": ["y"]}}},
        {"resolve_at": "approval"},
        {"run_at": MOMENT},
        {"window": {"days": ["mon"], "start": "01:00", "end": "02:00", "timezone": "UTC"}},
        {"expires_at": datetime(2026, 12, 1, 8, 0, 1, tzinfo=UTC)},
    ],
)
def test_anything_that_runs_changes_the_hash(change):
    assert content_hash(_hashed(**change)) != content_hash(_hashed())


def test_the_frozen_devices_are_part_of_the_hash_in_any_order():
    one, two = uuid.uuid4(), uuid.uuid4()
    request = _hashed(resolve_at="approval")
    assert content_hash(request, [one, two]) == content_hash(request, [two, one])
    assert content_hash(request, [one]) != content_hash(request, [one, two])
    assert content_hash(request, []) != content_hash(request, None)
