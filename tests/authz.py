"""The authorization matrix: every endpoint against every role, a sibling and nobody.

Declare a ``Case`` per endpoint (list, detail, create, update, delete, custom actions, exports)
and call ``assert_authz_matrix(world, case)`` with the ``authz_world`` fixture, which runs the
test twice: once with portal sessions and once with API keys. For every attempt the helper
checks:

- anonymous -> 401 (the error envelope) and no side effect;
- a member of a sibling organization, in every role -> 404 (a listing: 200 with no rows) and no
  side effect; 403 when that role holds the view permission or the endpoint's permission
  nowhere (refused whatever the id, so nothing leaks either way);
- a member of the home organization in a role not in ``allowed`` -> 403 and no side effect;
- a member in an ``allowed`` role -> ``status`` and whatever ``expect`` asserts about the exact
  resulting state.

"No side effect" compares a snapshot taken before and after the request: the number of audit
rows and domain events, plus ``case.state(attempt)``. Each attempt runs inside a savepoint that
is rolled back, so every role meets the same starting state (``case.setup`` builds the target
inside it).

Use it from a test module's conftest (``from tests.authz import authz_world  # noqa: F401``)::

    def test_memberships_delete_matrix(authz_world):
        assert_authz_matrix(authz_world, Case(
            permission="membership.delete",
            allowed={Role.OWNER, Role.ADMIN},
            setup=lambda world: make_membership(world.tree["retail"]),
            request=lambda a: Call("delete", f"/api/v1/memberships/{a.target.pk}/"),
            status=204,
            state=lambda a: Membership.objects.filter(pk=a.target.pk).exists(),
            expect=lambda a, response: ...,
        ))
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Collection, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from django.db import transaction
from rest_framework.fields import DateTimeField
from rest_framework.response import Response
from rest_framework.test import APIClient

from apps.accounts import tokens
from apps.accounts.models import APIKey, Membership, Organization, User
from apps.accounts.roles import ROLE_PERMISSIONS, Role
from apps.core.models import AuditLog, Event

from .factories import UserFactory

ROLES: tuple[str, ...] = tuple(Role.values)
_serial = itertools.count(1)
SESSION = "session"
API_KEY = "api_key"


@dataclass(frozen=True)
class Call:
    """One HTTP request. ``data`` is sent as JSON for writes and as query parameters for GET."""

    method: str
    path: str
    data: Any = None

    def send(self, client: APIClient) -> Response:
        method = getattr(client, self.method.lower())
        if self.method.lower() == "get":
            return method(self.path, self.data)  # type: ignore[no-any-return]
        return method(self.path, self.data, format="json")  # type: ignore[no-any-return]


@dataclass
class Principal:
    """Someone holding ``role`` on ``organization``, through a session or an API key."""

    role: str
    organization: Organization
    client: APIClient
    user: User | None = None
    api_key: APIKey | None = None
    token: str = ""

    @property
    def actor_kind(self) -> str:
        return "user" if self.user is not None else "api_key"

    @property
    def label(self) -> str:
        """The actor label audit rows carry for this principal."""
        if self.user is not None:
            return self.user.email
        assert self.api_key is not None
        return f"API key {self.api_key.name} ({self.api_key.prefix})"


@dataclass
class World:
    kind: str
    tree: dict[str, Organization]
    home: Organization
    sibling: Organization
    members: dict[str, Principal] = field(default_factory=dict)
    outsiders: dict[str, Principal] = field(default_factory=dict)

    def principal(self, role: str, organization: Organization | None = None) -> Principal:
        """A new principal of this world's kind holding ``role`` on ``organization``."""
        return make_principal(self.kind, organization or self.home, role)


@dataclass
class Attempt:
    world: World
    principal: Principal | None  # None: anonymous
    target: Any


@dataclass(frozen=True)
class Case:
    permission: str  # what the endpoint checks, e.g. "membership.change"
    allowed: Collection[str]  # roles on the home organization that may do it
    request: Callable[[Attempt], Call]
    expect: Callable[[Attempt, Response], None]
    status: int = 200
    setup: Callable[[World], Any] | None = None
    state: Callable[[Attempt], Any] | None = None
    listing: bool = False  # outsiders who may view get 200 with no rows instead of 404
    outsider_expect: Callable[[Attempt, Response], None] | None = None  # overrides 404 / []


def make_principal(kind: str, organization: Organization, role: str) -> Principal:
    client = APIClient()
    if kind == SESSION:
        user = UserFactory(email=f"{role}.{next(_serial)}@{organization.slug}.example.com")
        Membership.objects.create(organization=organization, user=user, role=role)
        client.force_login(user)
        return Principal(role=role, organization=organization, client=client, user=user)
    issued = tokens.issue("api")
    api_key = APIKey.objects.create(
        organization=organization,
        name=f"{role} key",
        role=role,
        prefix=issued.prefix,
        token_hash=issued.token_hash,
    )
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {issued.token}")
    return Principal(
        role=role, organization=organization, client=client, api_key=api_key, token=issued.token
    )


def build_world(
    tree: dict[str, Organization], *, kind: str, home: str = "acme", sibling: str = "globex"
) -> World:
    world = World(kind=kind, tree=tree, home=tree[home], sibling=tree[sibling])
    for role in ROLES:
        world.members[role] = make_principal(kind, world.home, role)
        world.outsiders[role] = make_principal(kind, world.sibling, role)
    return world


@pytest.fixture(params=[SESSION, API_KEY])
def authz_world(request: pytest.FixtureRequest, tree: dict[str, Organization]) -> World:
    """Every role on acme and on its sibling globex, as sessions and then as API keys."""
    return build_world(tree, kind=request.param)


@contextmanager
def rolled_back() -> Iterator[None]:
    """Undo everything the block wrote (the test runs inside a transaction)."""
    savepoint = transaction.savepoint()
    try:
        yield
    finally:
        transaction.savepoint_rollback(savepoint)


def _snapshot(case: Case, attempt: Attempt) -> tuple[Any, ...]:
    extra = case.state(attempt) if case.state is not None else None
    return AuditLog.objects.count(), Event.objects.count(), extra


def _describe(who: str, call: Call, response: Response) -> str:
    body = response.content[:300] if not response.streaming else b"<stream>"
    return f"{who}: {call.method.upper()} {call.path} -> {response.status_code} {body!r}"


def _attempt(case: Case, world: World, principal: Principal | None) -> tuple[Attempt, Call]:
    target = case.setup(world) if case.setup is not None else None
    attempt = Attempt(world=world, principal=principal, target=target)
    return attempt, case.request(attempt)


def _assert_refused(
    case: Case, world: World, principal: Principal | None, status: int, who: str
) -> None:
    with rolled_back():
        attempt, call = _attempt(case, world, principal)
        before = _snapshot(case, attempt)
        client = principal.client if principal is not None else APIClient()
        response = call.send(client)
        assert response.status_code == status, _describe(who, call, response)
        assert response.json()["error"]["status"] == status, _describe(who, call, response)
        assert _snapshot(case, attempt) == before, f"{who}: refused, yet something changed"


def _holds_gate(case: Case, role: str) -> bool:
    resource = case.permission.split(".", 1)[0]
    held = ROLE_PERMISSIONS[role]
    return f"{resource}.view" in held and case.permission in held


def _assert_outsider(case: Case, world: World, principal: Principal) -> None:
    who = f"{world.kind} {principal.role} of sibling {world.sibling.name}"
    if not _holds_gate(case, principal.role):
        _assert_refused(case, world, principal, 403, who)
    elif case.listing or case.outsider_expect is not None:
        with rolled_back():
            attempt, call = _attempt(case, world, principal)
            before = _snapshot(case, attempt)
            response = call.send(principal.client)
            if case.outsider_expect is not None:
                case.outsider_expect(attempt, response)
            else:
                assert response.status_code == 200, _describe(who, call, response)
                assert response.json()["results"] == [], _describe(who, call, response)
            assert _snapshot(case, attempt) == before, f"{who}: something changed"
    else:
        _assert_refused(case, world, principal, 404, who)


def assert_authz_matrix(world: World, case: Case) -> None:
    """Run ``case`` as nobody, as every role of a sibling and as every role at home."""
    unknown = set(case.allowed) - set(ROLES)
    assert not unknown, f"unknown roles {unknown}"
    _assert_refused(case, world, None, 401, f"{world.kind} anonymous")
    for principal in world.outsiders.values():
        _assert_outsider(case, world, principal)
    for role, principal in world.members.items():
        who = f"{world.kind} {role} of {world.home.name}"
        if role not in case.allowed:
            _assert_refused(case, world, principal, 403, who)
            continue
        with rolled_back():
            attempt, call = _attempt(case, world, principal)
            response = call.send(principal.client)
            assert response.status_code == case.status, _describe(who, call, response)
            case.expect(attempt, response)


# --- small helpers for API tests ---------------------------------------------------------------


def iso(value: datetime | None) -> str | None:
    """A datetime exactly as the API renders it."""
    return DateTimeField().to_representation(value) if value is not None else None


def ids(response: Response) -> list[str]:
    return [row["id"] for row in response.json()["results"]]


def error(response: Response) -> dict[str, Any]:
    return response.json()["error"]  # type: ignore[no-any-return]


def last_audit(action: str) -> AuditLog:
    return AuditLog.objects.filter(action=action).latest("created_at", "id")
