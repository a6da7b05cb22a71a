"""``apps.core.paging.keyset_page``: newest first, cursors that resume exactly, bad ones 404."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.http import Http404

from apps.core.models import AuditLog
from apps.core.paging import keyset_page

pytestmark = pytest.mark.django_db

AT = datetime(2026, 11, 30, 9, 0, tzinfo=UTC)


def test_pages_follow_each_other_without_gaps_or_repeats_even_on_equal_times():
    for index in range(5):  # two rows share each of the first two timestamps
        AuditLog.objects.create(action=f"a{index}", created_at=AT + timedelta(seconds=index // 2))
    rows = AuditLog.objects.order_by("-created_at", "-id")
    everything = [row.pk for row in rows]

    first, cursor = keyset_page(rows, "", field="created_at", size=2)
    second, cursor2 = keyset_page(rows, cursor, field="created_at", size=2)
    third, cursor3 = keyset_page(rows, cursor2, field="created_at", size=2)

    assert [r.pk for r in first + second + third] == everything
    assert cursor == f"{first[1].created_at.isoformat()}_{first[1].pk}"
    assert (len(third), cursor3) == (1, "")


def test_a_cursor_with_a_bad_id_is_a_404():
    with pytest.raises(Http404):
        keyset_page(AuditLog.objects.all(), f"{AT.isoformat()}_nope", field="created_at", size=2)
