"""A slow, idempotent consumer for the killed-worker test.

The test's Celery workers import this module (``celery worker -I tests.core.outbox_consumers``)
so the consumer is registered there as it is in the test process. Its effect is one row per
event (``INSERT ... ON CONFLICT DO NOTHING``) written in the delivery's transaction; every
attempt is also counted on a separate autocommit connection, so attempts cut short by a kill
still show.
"""

from __future__ import annotations

import os
import time
from typing import Any

import psycopg
from django.db import connection

from apps.core import events
from apps.core.models import Event

NAME = "outbox_test_effects"
EVENT_TYPE = "outbox_test.effect"
EFFECTS_TABLE = "outbox_test_effects"
ATTEMPTS_TABLE = "outbox_test_attempts"
SECONDS_PER_EVENT = 0.2

CREATE_TABLES = f"""
CREATE TABLE IF NOT EXISTS {EFFECTS_TABLE} (event_id uuid PRIMARY KEY, pid integer NOT NULL);
CREATE TABLE IF NOT EXISTS {ATTEMPTS_TABLE} (event_id uuid PRIMARY KEY, attempts integer NOT NULL);
"""
DROP_TABLES = f"DROP TABLE IF EXISTS {EFFECTS_TABLE}, {ATTEMPTS_TABLE};"

_counter: dict[str, Any] = {}


def _count_attempt(event_id: Any) -> None:
    if "connection" not in _counter:
        params = connection.settings_dict
        _counter["connection"] = psycopg.connect(
            dbname=params["NAME"],
            user=params["USER"] or None,
            password=params["PASSWORD"] or None,
            host=params["HOST"] or None,
            port=params["PORT"] or None,
            autocommit=True,
        )
    _counter["connection"].execute(
        f"INSERT INTO {ATTEMPTS_TABLE} (event_id, attempts) VALUES (%s, 1) "
        f"ON CONFLICT (event_id) DO UPDATE SET attempts = {ATTEMPTS_TABLE}.attempts + 1",
        [event_id],
    )


def apply_effect(event: Event) -> None:
    _count_attempt(event.pk)
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {EFFECTS_TABLE} (event_id, pid) VALUES (%s, %s) "
            "ON CONFLICT (event_id) DO NOTHING",
            [event.pk, os.getpid()],
        )
    time.sleep(SECONDS_PER_EVENT)  # slow work, so that a kill lands mid-delivery


def register() -> None:
    events.consumer(NAME, events=[EVENT_TYPE])(apply_effect)


register()
