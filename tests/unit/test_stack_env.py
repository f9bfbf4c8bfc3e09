"""The test stack's environment (tests/support/stack.py): a stack's own settings win over the suite's defaults."""

from pathlib import Path
from types import SimpleNamespace

import pytest

from tests.support.stack import SUITE_SETTINGS, Stack


def stack(extra_env: dict[str, str], suite_settings: bool = True) -> Stack:
    servers = SimpleNamespace(nats_url="nats://127.0.0.1:1", database_url="postgresql://x@127.0.0.1:1/x")
    return Stack(servers, Path("/nonexistent"), extra_env=extra_env,  # type: ignore[arg-type]  # env() reads two URLs
                 suite_settings=suite_settings)  # fmt: skip


def test_the_suite_defaults_apply_unless_a_stack_sets_its_own() -> None:
    suite = stack({}).env()
    assert (suite["TELEMETRY_SKETCH_COMPACTION_INTERVAL"], suite["TELEMETRY_RETENTION_INTERVAL"]) == ("1", "0")
    own = stack({"TELEMETRY_SKETCH_COMPACTION_INTERVAL": "30", "TELEMETRY_LOG_FORMAT": "console"}).env()
    assert own["TELEMETRY_SKETCH_COMPACTION_INTERVAL"] == "30"  # raised TypeError (a repeated keyword) before
    assert own["TELEMETRY_LOG_FORMAT"] == "console"
    assert own["NATS_URL"] == "nats://127.0.0.1:1"


def test_a_benchmark_stack_runs_with_the_product_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in SUITE_SETTINGS:
        monkeypatch.delenv(name, raising=False)
    product = stack({}, suite_settings=False).env()
    assert not SUITE_SETTINGS.keys() & product.keys()  # the processes fall back to Settings' own defaults
    assert (
        stack({"TELEMETRY_RETENTION_INTERVAL": "0"}, suite_settings=False).env()["TELEMETRY_RETENTION_INTERVAL"] == "0"
    )
