"""Messages uploaded over the HTTPS device API, queued for the telemetry pipeline."""

from __future__ import annotations

import django.db.models.deletion
import django.utils.timezone
from django.db import migrations, models

import apps.core.ids


class Migration(migrations.Migration):
    dependencies = [
        ("devices", "0003_group_grant_listing"),
    ]

    operations = [
        migrations.CreateModel(
            name="UplinkMessage",
            fields=[
                (
                    "id",
                    models.UUIDField(
                        default=apps.core.ids.uuid7,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                (
                    "kind",
                    models.CharField(
                        choices=[
                            ("heartbeat", "Heartbeat"),
                            ("telemetry", "Telemetry"),
                            ("events", "Events"),
                        ],
                        max_length=16,
                    ),
                ),
                ("boot", models.BigIntegerField()),
                ("seq", models.BigIntegerField()),
                ("payload", models.JSONField()),
                ("received_at", models.DateTimeField(default=django.utils.timezone.now)),
                ("processed_at", models.DateTimeField(blank=True, null=True)),
                (
                    "device",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="uplink_messages",
                        to="devices.device",
                    ),
                ),
            ],
            options={
                "ordering": ["id"],
                "indexes": [
                    models.Index(
                        condition=models.Q(("processed_at", None)),
                        fields=["id"],
                        name="devices_uplink_pending",
                    )
                ],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("device", "kind", "boot", "seq"), name="devices_uplink_once"
                    )
                ],
            },
        ),
    ]
