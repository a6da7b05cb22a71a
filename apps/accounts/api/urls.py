from __future__ import annotations

from django.urls import path
from rest_framework.routers import DefaultRouter

from .views import (
    APIKeyViewSet,
    InvitationAcceptView,
    InvitationViewSet,
    MembershipViewSet,
    OrganizationViewSet,
)

router = DefaultRouter(trailing_slash=True)
router.register("organizations", OrganizationViewSet, basename="organization")
router.register("memberships", MembershipViewSet, basename="membership")
router.register("invitations", InvitationViewSet, basename="invitation")
router.register("api-keys", APIKeyViewSet, basename="apikey")

urlpatterns = [
    # before the router, whose detail route would otherwise read "accept" as an id
    path("invitations/accept/", InvitationAcceptView.as_view(), name="invitation-accept"),
    *router.urls,
]
