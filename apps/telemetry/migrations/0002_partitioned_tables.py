"""The time-partitioned tables behind ``TelemetrySample`` and ``DeviceEvent``.

Django cannot declare a partitioned table, so they are created here; ``apps.telemetry.partitions``
creates each day's partition ahead of time and drops the ones behind retention. The first
partitions are made right here (yesterday to a week ahead) so a fresh installation ingests at
once. No DEFAULT partition on purpose: a row outside every partition is refused by the
pipeline's time window before it reaches the table, and a DEFAULT partition would block creating
the partition that covers its rows later.

There is no foreign key to devices (PostgreSQL would check it per row on every COPY); a device
is never deleted while its telemetry is kept (devices are decommissioned, not deleted).
"""

from django.db import migrations

CREATE = """
CREATE TABLE telemetry_sample (
    device_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    kind smallint NOT NULL,
    boot bigint NOT NULL,
    seq bigint NOT NULL,
    idx smallint NOT NULL DEFAULT 0,
    received_at timestamptz NOT NULL,
    metrics jsonb NOT NULL,
    extra jsonb,
    PRIMARY KEY (device_id, ts, kind, boot, seq, idx)
) PARTITION BY RANGE (ts);

CREATE TABLE telemetry_device_event (
    device_id uuid NOT NULL,
    ts timestamptz NOT NULL,
    boot bigint NOT NULL,
    seq bigint NOT NULL,
    received_at timestamptz NOT NULL,
    type varchar(200) NOT NULL,
    severity varchar(16) NOT NULL,
    message text NOT NULL DEFAULT '',
    data jsonb,
    PRIMARY KEY (device_id, ts, boot, seq)
) PARTITION BY RANGE (ts);

DO $$
DECLARE
    day date := current_date - 1;
BEGIN
    WHILE day <= current_date + 7 LOOP
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_sample '
            'FOR VALUES FROM (%L) TO (%L)',
            'telemetry_sample_' || to_char(day, 'YYYYMMDD'), day, day + 1);
        EXECUTE format(
            'CREATE TABLE IF NOT EXISTS %I PARTITION OF telemetry_device_event '
            'FOR VALUES FROM (%L) TO (%L)',
            'telemetry_device_event_' || to_char(day, 'YYYYMMDD'), day, day + 1);
        day := day + 1;
    END LOOP;
END $$;
"""

DROP = "DROP TABLE IF EXISTS telemetry_device_event; DROP TABLE IF EXISTS telemetry_sample;"


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0001_initial")]

    operations = [migrations.RunSQL(CREATE, DROP)]
