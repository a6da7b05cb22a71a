from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .views import ApprovalPolicyViewSet, ChangeRequestViewSet

router = SimpleRouter(trailing_slash=True)
router.register("change-requests", ChangeRequestViewSet, basename="changerequest")
router.register("approval-policies", ApprovalPolicyViewSet, basename="approvalpolicy")

urlpatterns = router.urls
