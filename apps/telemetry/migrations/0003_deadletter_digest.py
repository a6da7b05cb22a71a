"""Dead letters get an identity (``DeadLetter.message_digest``), unique, so a redelivered bad
message makes no second dead letter. Existing rows get it in SQL (the same SHA-256 of the stored
topic, a NUL and the payload), the oldest of each group of identical messages only: the others
are the duplicates this change stops making, and keep a NULL digest."""

from __future__ import annotations

from django.db import migrations, models

BACKFILL = r"""
UPDATE telemetry_deadletter AS letter SET digest = first.digest
FROM (
    SELECT DISTINCT ON (digest) id, digest
    FROM (
        SELECT id, received_at,
               sha256(convert_to(topic, 'UTF8') || '\x00'::bytea || payload) AS digest
        FROM telemetry_deadletter
    ) AS computed
    ORDER BY digest, received_at, id
) AS first
WHERE letter.id = first.id
"""


class Migration(migrations.Migration):
    dependencies = [("telemetry", "0002_partitioned_tables")]

    operations = [
        migrations.AddField(
            model_name="deadletter",
            name="digest",
            field=models.BinaryField(blank=True, editable=False, max_length=32, null=True),
        ),
        migrations.RunSQL(BACKFILL, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="deadletter",
            constraint=models.UniqueConstraint(fields=("digest",), name="telemetry_dl_digest"),
        ),
    ]
