from __future__ import annotations

import pytest
import redis
from django.conf import settings

from apps.accounts.models import Organization

from .broker_support import mqtt_broker, mqtt_broker_process  # noqa: F401 (a real Mosquitto)
from .factories import make_organization


def empty_if_alone(client: redis.Redis) -> bool:
    """Empty ``client``'s database unless another client is connected to it (another test run
    in this tree, its workers: emptying it would pull their state from under them). Returns
    whether it did."""
    database = client.connection_pool.connection_kwargs.get("db", 0)
    me = client.client_id()
    others = [
        peer
        for peer in client.client_list()
        if int(peer["db"]) == database and int(peer["id"]) != me
    ]
    if others:
        return False
    client.flushdb()
    return True


@pytest.fixture(scope="session", autouse=True)
def _empty_test_redis() -> None:
    """Start from an empty Redis database of the tests' own (``TEST_REDIS_DB``,
    config/settings/test.py), so nothing a former run left there (Celery messages no worker
    takes, cache entries, worker stats) meets this one; when another run is using it, the next
    run that finds it alone empties it."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    try:
        database = client.connection_pool.connection_kwargs.get("db", 0)
        if database != settings.TEST_REDIS_DB:  # never empty another database
            raise RuntimeError(f"REDIS_URL {settings.REDIS_URL} is not TEST_REDIS_DB")
        empty_if_alone(client)
    finally:
        client.close()


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
