from __future__ import annotations

import pytest

from apps.accounts.models import Organization

from .broker_support import mqtt_broker, mqtt_broker_process  # noqa: F401 (a real Mosquitto)
from .factories import make_organization


@pytest.fixture
def tree(db) -> dict[str, Organization]:
    """platform -> acme (manufacturer) -> {retail (customer) -> store-1 (site), hospital};
    globex (manufacturer) is a sibling of acme."""
    platform = make_organization("Platform", kind=Organization.Kind.PLATFORM)
    acme = make_organization("Acme", platform, Organization.Kind.MANUFACTURER)
    globex = make_organization("Globex", platform, Organization.Kind.MANUFACTURER)
    retail = make_organization("Retail Co", acme)
    hospital = make_organization("Hospital", acme)
    store = make_organization("Store 1", retail, Organization.Kind.SITE)
    return {
        "platform": platform,
        "acme": acme,
        "globex": globex,
        "retail": retail,
        "hospital": hospital,
        "store": store,
    }
