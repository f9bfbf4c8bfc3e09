"""telemetry_core.gc_tuning: the collector's thresholds of our processes, and the batch they exist for."""

import gc
from collections.abc import Iterator

import pytest

from telemetry_core.gc_tuning import DEFAULT_THRESHOLD, FULL_EVERY, MIDDLE_EVERY, tune_gc
from telemetry_core.settings import ConfigurationError, Settings


@pytest.fixture
def restored_gc() -> Iterator[None]:
    """Whatever a test does to the collector is undone (the test process shares it with every other test)."""
    before = gc.get_threshold()
    yield
    gc.unfreeze()
    gc.set_threshold(*before)


def test_tune_gc_sets_the_thresholds_and_freezes_what_exists(restored_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    kept = [object() for _ in range(10)]  # noqa: F841 - alive, so frozen
    assert tune_gc(DEFAULT_THRESHOLD, "test") == (DEFAULT_THRESHOLD, MIDDLE_EVERY, FULL_EVERY)
    assert gc.get_threshold() == (DEFAULT_THRESHOLD, MIDDLE_EVERY, FULL_EVERY)
    assert gc.get_freeze_count() > 0


def test_zero_keeps_pythons_thresholds(restored_gc: None) -> None:
    gc.set_threshold(700, 10, 10)
    assert tune_gc(0, "test") == (700, 10, 10)
    assert gc.get_threshold() == (700, 10, 10)


def test_a_batch_of_containers_triggers_far_fewer_collections_once_tuned(restored_gc: None) -> None:
    """What the setting is for: a fetched batch's objects, alive together, collected by the young generation."""

    def collections_during_a_batch() -> list[int]:
        before = [s["collections"] for s in gc.get_stats()]
        batch = [{"tags": {"room": str(i)}, "row": (i, [i])} for i in range(64_000)]  # alive together, as a batch
        del batch
        return [s["collections"] - b for s, b in zip(gc.get_stats(), before, strict=True)]

    gc.set_threshold(700, 10, 10)
    untuned = collections_during_a_batch()
    tune_gc(DEFAULT_THRESHOLD, "test")
    tuned = collections_during_a_batch()
    assert untuned[0] >= 100 and tuned[0] <= 10, (untuned, tuned)
    assert tuned[2] == 0, tuned


def test_the_setting_defaults_and_is_checked() -> None:
    assert Settings.from_env({}).gc_threshold == DEFAULT_THRESHOLD
    assert Settings.from_env({"TELEMETRY_GC_THRESHOLD": "0"}).gc_threshold == 0
    with pytest.raises(ConfigurationError, match="TELEMETRY_GC_THRESHOLD"):
        Settings.from_env({"TELEMETRY_GC_THRESHOLD": "lots"})
    with pytest.raises(ConfigurationError, match="TELEMETRY_GC_THRESHOLD"):
        Settings.from_env({"TELEMETRY_GC_THRESHOLD": "-1"})
