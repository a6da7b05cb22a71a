from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .enrollment import ClaimTokenViewSet, EnrollmentPolicyViewSet

router = SimpleRouter(trailing_slash=True)
router.register("enrollment-policies", EnrollmentPolicyViewSet, basename="enrollmentpolicy")
router.register("claim-tokens", ClaimTokenViewSet, basename="claimtoken")

urlpatterns = router.urls
