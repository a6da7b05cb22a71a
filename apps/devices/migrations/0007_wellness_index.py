"""The heartbeat sweeper's partial indexes (``apps.telemetry.wellness``): a sweep reads exactly
the active devices whose connectivity it must change, never the whole fleet.

- ``devices_heartbeat_due``: devices whose provisioning records a heartbeat policy, by
  connectivity and the UTC time their next heartbeat is overdue (last sighting + interval x
  missed beats, clamped to the profiles' limits; a malformed policy counts as 60 s x 3);
- ``devices_heartbeat_seen``: the others (the profile version's policy), by profile version,
  connectivity and last sighting: one range per profile version.

Raw SQL (Django cannot declare these expressions): the sweeper's query repeats them exactly, and
``tests/telemetry/test_wellness_sweep.py`` checks the planner uses them.
"""

from django.db import migrations

DUE = (
    "(last_seen_at AT TIME ZONE 'UTC') + make_interval(secs => COALESCE(CASE"
    " WHEN jsonb_typeof(provisioning #> '{heartbeat,interval_seconds}') = 'number'"
    " AND jsonb_typeof(provisioning #> '{heartbeat,missed_beats}') = 'number'"
    " THEN NULLIF(GREATEST(LEAST((provisioning #> '{heartbeat,interval_seconds}')::numeric, 604800), 0)"
    " * GREATEST(LEAST((provisioning #> '{heartbeat,missed_beats}')::numeric, 1000), 0), 0) END,"
    " 180)::float8)"
)

CREATE = [
    "CREATE INDEX devices_heartbeat_due ON devices_device (connectivity, (" + DUE + "))"
    " WHERE state = 'active' AND provisioning ? 'heartbeat'",
    "CREATE INDEX devices_heartbeat_seen ON devices_device"
    " (profile_version_id, connectivity, last_seen_at)"
    " WHERE state = 'active' AND NOT (provisioning ? 'heartbeat')",
]
DROP = [
    "DROP INDEX IF EXISTS devices_heartbeat_due",
    "DROP INDEX IF EXISTS devices_heartbeat_seen",
]


class Migration(migrations.Migration):

    dependencies = [
        ('devices', '0006_broker_refusals'),
    ]

    operations = [
        migrations.RunSQL(sql=CREATE, reverse_sql=DROP),
    ]
