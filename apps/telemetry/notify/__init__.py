"""Notifications: alert events to people (inbox, email) and to channels (Standard Webhooks,
Slack-compatible), every step an outbox delivery. See docs/notifications.md.

- ``policy``: who gets what (pure): severities, preferences, quiet hours, channel filters.
- ``fanout``: the ``notifications`` outbox consumer of ``alert.*`` events.
- ``deliver``: the ``notify.channel.<id>`` and ``notify.email.<id>`` consumer families.
- ``services`` / ``selectors``: channels; ``inbox``: a person's inbox and preferences.
"""
