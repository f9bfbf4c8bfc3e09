"""Identifiers that end up in NATS subjects or KV keys: no line break, anywhere (Python's `$` matches before one)."""

import msgspec
import pytest

from gateway.deps import checked_name
from gateway.routes.stream import _ID as SUBSCRIPTION_ID
from telemetry_core.api_key_admin import _KEY_ID
from telemetry_schemas.fields import DeviceId, MetricName
from telemetry_schemas.values import metric_name_problem

BROKEN = ["dev\n", "dev\r\n", "d\nev", "\ndev", "dev\n\n"]


@pytest.mark.parametrize("name", BROKEN)
def test_a_line_break_is_refused_everywhere_a_name_is_checked(name: str) -> None:
    for kind in (DeviceId, MetricName):
        with pytest.raises(msgspec.ValidationError):
            msgspec.convert(name, kind)
    assert metric_name_problem(name) is not None
    with pytest.raises(Exception, match="is invalid"):
        checked_name(name, "device_id")
    assert SUBSCRIPTION_ID.fullmatch(name) is None
    assert _KEY_ID.fullmatch(f"key_0123456789ab{name[-1]}") is None


def test_plain_names_still_pass() -> None:
    for name in ("dev_1", "a:b-c_D9"):
        assert msgspec.convert(name, DeviceId) == msgspec.convert(name, MetricName) == name
        assert metric_name_problem(name) is None and checked_name(name, "device_id") == name
    assert SUBSCRIPTION_ID.fullmatch("sub_abc-1") and _KEY_ID.fullmatch("key_0123456789ab")
