"""Portal navigation and the current organization: what the signed-in user's roles allow.

Navigation is declarative: later capabilities append a ``NavItem`` to ``NAVIGATION`` (or call
``register``) and the side bar shows it to the roles whose permissions include it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from django.urls import reverse

from apps.core.actors import Actor

from .models import Organization

SESSION_ORGANIZATION_KEY = "portal_organization_id"
SWITCHER_LIMIT = 200


@dataclass(frozen=True)
class NavItem:
    """One side-navigation entry: shown when the actor holds ``permission`` on the current
    organization (always when ``permission`` is None). ``scoped`` URLs take the organization id."""

    label: str
    url_name: str
    permission: str | None
    scoped: bool = True
    section: str = "Organization"
    position: int = 100  # order within the section


SECTIONS = ("Organization", "Fleet", "Account")


NAVIGATION: list[NavItem] = [
    NavItem("Dashboard", "portal:dashboard", "organization.view"),
    NavItem("Members", "portal:members", "membership.view"),
    NavItem("Invitations", "portal:invitations", "invitation.view"),
    NavItem("API keys", "portal:api-keys", "apikey.view"),
    NavItem("Audit log", "portal:audit-log", "auditlog.view"),
    NavItem("Security", "portal:security", None, scoped=False, section="Account"),
]


def register(item: NavItem) -> None:
    """Add a navigation entry (used by apps that bring their own portal pages)."""
    if all(existing.url_name != item.url_name for existing in NAVIGATION):
        NAVIGATION.append(item)


def visible_organizations(actor: Actor) -> Any:
    return Organization.objects.for_actor(actor, "view").filter(is_active=True)


def current_organization(request: HttpRequest) -> Organization | None:
    """The organization kept in the session, when still visible; else the top-most visible one."""
    actor: Actor = request.actor  # type: ignore[attr-defined]
    if hasattr(request, "_portal_organization"):
        cached: Organization | None = request._portal_organization
        return cached
    organizations = visible_organizations(actor)
    stored = request.session.get(SESSION_ORGANIZATION_KEY)
    organization = organizations.filter(pk=stored).first() if stored else None
    if organization is None:
        organization = organizations.order_by("depth", "path").first()
        if organization is not None:
            request.session[SESSION_ORGANIZATION_KEY] = str(organization.pk)
    request._portal_organization = organization  # type: ignore[attr-defined]
    return organization


def set_current_organization(request: HttpRequest, organization: Organization) -> None:
    request.session[SESSION_ORGANIZATION_KEY] = str(organization.pk)
    request._portal_organization = organization  # type: ignore[attr-defined]


def organization_for(
    request: HttpRequest, organization_id: uuid.UUID, permission: str
) -> Organization:
    """The organization named in a portal URL: 404 when outside the actor's view, 403 when
    visible but ``permission`` is not held there. It becomes the current organization."""
    actor: Actor = request.actor  # type: ignore[attr-defined]
    organization = visible_organizations(actor).filter(pk=organization_id).first()
    if organization is None:
        raise Http404("No such organization.")
    if not actor.has_perm(permission, organization.path):
        raise PermissionDenied
    set_current_organization(request, organization)
    return organization


def require_perm(actor: Actor, permission: str, organization: Organization) -> None:
    if not actor.has_perm(permission, organization.path):
        raise PermissionDenied


def _nav_order(item: NavItem) -> tuple[int, int]:
    section = SECTIONS.index(item.section) if item.section in SECTIONS else len(SECTIONS)
    return section, item.position


def navigation_for(request: HttpRequest) -> dict[str, Any]:
    actor: Actor = request.actor  # type: ignore[attr-defined]
    organization = current_organization(request)
    items: list[dict[str, Any]] = []
    for item in sorted(NAVIGATION, key=_nav_order):
        if item.scoped and organization is None:
            continue
        if item.permission and (
            organization is None or not actor.has_perm(item.permission, organization.path)
        ):
            continue
        kwargs = {"organization_id": organization.pk} if item.scoped and organization else {}
        url = reverse(item.url_name, kwargs=kwargs)
        items.append(
            {
                "label": item.label,
                "url": url,
                "section": item.section,
                "active": _is_active(request.path, url),
            }
        )
    switcher = list(
        visible_organizations(actor).order_by("path").only("id", "name", "depth")[:SWITCHER_LIMIT]
    )
    top = min((org.depth for org in switcher), default=0)
    return {
        "nav_items": items,
        "nav_sections": _sections(items),
        "current_organization": organization,
        "switcher_organizations": [
            {
                "id": org.pk,
                "label": "\u2003" * (org.depth - top) + org.name,
                "current": organization is not None and org.pk == organization.pk,
            }
            for org in switcher
        ],
    }


def _sections(items: list[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    sections: dict[str, list[dict[str, Any]]] = {}
    for item in items:
        sections.setdefault(item["section"], []).append(item)
    return list(sections.items())


def _is_active(path: str, url: str) -> bool:
    # The dashboard's URL prefixes every page of its organization: match it exactly.
    return path == url if url.count("/") <= 3 else path.startswith(url)
