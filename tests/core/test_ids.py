from __future__ import annotations

import time
import uuid

from apps.core.ids import uuid7, uuid7_hex_batch


def test_ids_made_by_one_process_strictly_increase():
    ids = [uuid7() for _ in range(20_000)]  # many share a millisecond
    assert ids == sorted(ids)
    assert len(set(ids)) == 20_000


def test_an_id_is_a_version_7_rfc_4122_uuid_carrying_the_time():
    before = time.time_ns() // 1_000_000
    value = uuid7()
    after = time.time_ns() // 1_000_000
    assert value.version == 7
    assert value.variant == "specified in RFC 4122"
    assert before <= value.int >> 80 <= after + 1


def test_a_batch_continues_the_same_increasing_sequence():
    before = uuid7()
    batch = [uuid.UUID(hex_id) for hex_id in uuid7_hex_batch(10_000)]
    after = uuid7()
    assert [before, *batch, after] == sorted([before, *batch, after])
    assert len(set(batch)) == 10_000
    assert {value.version for value in batch} == {7}
