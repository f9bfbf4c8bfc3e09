"""One NOTICES message per ingest transaction (StoredNotices): how notices are grouped, identified and read back."""

from datetime import UTC, datetime

import msgspec
import pytest

from ingest_worker.notices import build_notice, notice_messages
from telemetry_core.headers import MSG_ID, REQUEST_ID
from telemetry_schemas.codecs import decode_notices, json_encoder
from telemetry_schemas.notices import PointsStored
from telemetry_schemas.values import Point

T0 = datetime(2031, 3, 1, 12, 0, tzinfo=UTC)


def notice(device: str, seq: int, points: int = 3) -> PointsStored:
    pts = [Point(timestamp=T0.replace(second=i), metric_name=f"m{i % 2}", value=float(i)) for i in range(points)]
    return build_notice(device, seq, pts, rollups_applied=True)


def test_a_transactions_notices_travel_as_one_message_and_read_back_equal() -> None:
    notices = [notice("a", 10), notice("b", 11), notice("a", 12)]
    ((body, headers),) = notice_messages(notices, {10: "r-1", 12: "r-3"})
    assert decode_notices(body) == notices
    assert headers[REQUEST_ID] == "r-1,r-3"
    assert headers[MSG_ID].startswith("stored:10-12:3:")


def test_the_message_id_is_the_same_for_the_same_notices_and_differs_for_others() -> None:
    """Re-publishing a transaction's notices (a retry, the same batch redelivered) is de-duplicated by JetStream."""
    a = notice_messages([notice("a", 10), notice("b", 11)])[0][1][MSG_ID]
    again = notice_messages([notice("a", 10), notice("b", 11)])[0][1][MSG_ID]
    other = notice_messages([notice("a", 10), notice("c", 13)])[0][1][MSG_ID]
    replayed = notice_messages([notice("a", 10), notice("b", 11)], id_prefix="replayed:x")[0][1][MSG_ID]
    assert a == again
    assert len({a, other, replayed}) == 3


def test_a_large_transaction_is_split_under_the_size_limit_in_order() -> None:
    notices = [notice(f"d{i}", 100 + i, points=20) for i in range(40)]
    one = len(json_encoder.encode(notices[0]))
    messages = notice_messages(notices, max_bytes=one * 5)
    assert 8 <= len(messages) <= 10
    assert all(len(body) <= one * 5 for body, _ in messages)
    assert [n for body, _ in messages for n in decode_notices(body)] == notices
    assert len({h[MSG_ID] for _, h in messages}) == len(messages)
    assert REQUEST_ID not in messages[0][1]  # no request ids given: no header


def test_a_notice_bigger_than_the_limit_still_goes_alone() -> None:
    notices = [notice("a", 1, points=50), notice("b", 2, points=50)]
    messages = notice_messages(notices, max_bytes=10)
    assert [decode_notices(body) for body, _ in messages] == [[notices[0]], [notices[1]]]


def test_a_lone_notice_of_the_old_shape_is_still_read() -> None:
    """NOTICES may still hold notices published one per POINTS message, before StoredNotices."""
    old = notice("a", 7)
    assert decode_notices(json_encoder.encode(old)) == [old]


@pytest.mark.parametrize("junk", [b"[]", b'{"notices": 3}', b'{"device_id": "a"}', b"not json"])
def test_anything_else_is_a_decode_error(junk: bytes) -> None:
    with pytest.raises(msgspec.DecodeError):
        decode_notices(junk)
