from __future__ import annotations

from rest_framework.routers import SimpleRouter

from .templates import ProvisioningTemplateViewSet

router = SimpleRouter(trailing_slash=True)
router.register(
    "provisioning-templates", ProvisioningTemplateViewSet, basename="provisioningtemplate"
)

urlpatterns = router.urls
