"""POINTS slots: the client-side hash equals the server's partition(); partitions split the slots."""

from alert_worker.evaluator import owns, partition_of
from telemetry_core.topology import (
    POINT_SLOTS,
    alert_engine_consumer,
    device_of_points_subject,
    partition_slots,
    slot_of,
    slot_of_points_subject,
)


def test_slot_is_fnv1a_of_the_device_like_the_servers_partition_function() -> None:
    # Values the nats-server partition(64,1) mapping gave for these devices (checked against v2.15).
    assert [slot_of(d) for d in ("dev_a", "dev-b:1", "x")] == [40, 46, 7]


def test_subjects_old_and_new_name_the_device_and_slot() -> None:
    assert device_of_points_subject("telemetry.points.40.dev_a") == "dev_a"
    assert device_of_points_subject("telemetry.points.dev_a") == "dev_a"  # stored before slots existed
    assert device_of_points_subject("telemetry.stored.dev_a") == ""
    assert slot_of_points_subject("telemetry.points.40.dev_a") == 40
    assert slot_of_points_subject("telemetry.points.dev_a") == 40


def test_partitions_split_the_slots_and_agree_with_partition_of() -> None:
    for partitions in (1, 2, 3, 7, 64):
        owned = [partition_slots(p, partitions) for p in range(partitions)]
        assert sorted(s for slots in owned for s in slots) == list(range(POINT_SLOTS))
    for device in ("dev_a", "dev-b:1", "x", "sensor-0042"):
        subject = f"telemetry.points.{slot_of(device)}.{device}"
        assert [owns(subject, p, 3) for p in range(3)] == [p == partition_of(device, 3) for p in range(3)]


def test_a_partition_consumer_filters_its_slots_and_legacy_subjects() -> None:
    assert alert_engine_consumer(0, 1).config().filter_subject == "telemetry.points.>"
    config = alert_engine_consumer(1, 4).config()
    assert config.filter_subject is None
    assert config.filter_subjects == ["telemetry.points.*", *(f"telemetry.points.{s}.*" for s in range(1, 64, 4))]
