from __future__ import annotations

from django.db import models


class ConnectionType(models.TextChoices):
    MQTT = "mqtt", "MQTT"
    HTTPS = "https", "HTTPS"
    BOTH = "both", "MQTT and HTTPS"


class Criticality(models.TextChoices):
    NORMAL = "normal", "Normal"
    CRITICAL = "critical", "Critical (requires approval)"
