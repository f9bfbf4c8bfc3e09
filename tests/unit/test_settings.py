from pathlib import Path

import pytest

from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings


def test_defaults_without_environment() -> None:
    s = Settings.from_env({})
    assert (s.nats_url, s.database_url, s.port, s.api_keys) == (None, None, 8218, ())
    assert s.data_dir == Path(".telemetry-data")


def test_values_are_parsed() -> None:
    s = Settings.from_env(
        {
            "NATS_URL": "nats://h:4222",
            "DATABASE_URL": "postgresql://u@h/db",
            "TELEMETRY_PORT": "9000",
            "TELEMETRY_API_KEYS": " a, b ,,",
            "TELEMETRY_PUBLISH_TIMEOUT": "0.5",
        }
    )
    assert (s.port, s.api_keys, s.publish_timeout_s) == (9000, ("a", "b"), 0.5)
    assert s.require_servers() == ("nats://h:4222", "postgresql://u@h/db")


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"TELEMETRY_PORT": "abc"}, "TELEMETRY_PORT must be a int between 1 and 65535, got 'abc'"),
        ({"TELEMETRY_PORT": "70000"}, "TELEMETRY_PORT must be between 1 and 65535, got '70000'"),
        ({"NATS_URL": "http://x"}, "NATS_URL must start with one of nats://"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL must start with one of postgresql://"),
        ({"TELEMETRY_LOG_FORMAT": "xml"}, "TELEMETRY_LOG_FORMAT must be one of auto, json, console"),
    ],
)
def test_bad_values_say_which_and_why(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError) as err:
        Settings.from_env(env)
    assert message in str(err.value)


def test_single_process_commands_need_both_urls() -> None:
    with pytest.raises(ConfigurationError, match="NATS_URL and DATABASE_URL must be set"):
        Settings.from_env({}).require_servers()


def test_the_signing_key_is_required_and_not_short() -> None:
    for env in ({}, {"TELEMETRY_SIGNING_KEY": "short"}):
        with pytest.raises(ConfigurationError, match="TELEMETRY_SIGNING_KEY must be set"):
            Settings.from_env(env).require_signing_key()
    assert Settings.from_env({"TELEMETRY_SIGNING_KEY": " " + "s" * 16}).require_signing_key() == b"s" * 16


def test_alert_partitions_cannot_exceed_the_point_slots() -> None:
    with pytest.raises(ConfigurationError, match="TELEMETRY_ALERT_PARTITIONS must be between 1 and 64"):
        Settings.from_env({"TELEMETRY_ALERT_PARTITIONS": "65"})


def test_health_details_are_private_unless_the_operator_says_so() -> None:
    assert Settings.from_env({}).public_health_details is False
    assert Settings.from_env({"TELEMETRY_PUBLIC_HEALTH_DETAILS": "true"}).public_health_details is True
    assert Settings.from_env({"TELEMETRY_PUBLIC_HEALTH_DETAILS": " FALSE "}).public_health_details is False
    with pytest.raises(ConfigurationError, match="TELEMETRY_PUBLIC_HEALTH_DETAILS must be one of true, false"):
        Settings.from_env({"TELEMETRY_PUBLIC_HEALTH_DETAILS": "yes please"})


def test_platform_event_subjects_are_configurable() -> None:
    from telemetry_core.topology import platform_consumer, stream_configs

    assert (Settings.from_env({}).device_deleted_subject, Settings.from_env({}).user_deleted_subject) == (
        "device_service.device.deleted",
        "account_service.user.deleted",
    )
    s = Settings.from_env({"TELEMETRY_DEVICE_DELETED_SUBJECT": "dev.gone", "TELEMETRY_USER_DELETED_SUBJECT": "u.gone."})
    assert (s.device_deleted_subject, s.user_deleted_subject) == ("dev.gone", "u.gone")
    (platform,) = [c for c in stream_configs(s) if c.name == "PLATFORM"]
    assert platform.subjects == ["dev.gone", "u.gone"]
    assert platform_consumer(s).filter_subjects == ("dev.gone", "u.gone")


def test_line_protocol_dots_setting() -> None:
    assert Settings.from_env({}).line_protocol_dots == "refuse"
    assert Settings.from_env({"TELEMETRY_LINE_PROTOCOL_DOTS": "underscore"}).line_protocol_dots == "underscore"
    with pytest.raises(ConfigurationError):
        Settings.from_env({"TELEMETRY_LINE_PROTOCOL_DOTS": "dash"})


def test_database_read_url_is_optional_and_checked() -> None:
    assert Settings.from_env({}).database_read_url is None  # unset: every read goes to DATABASE_URL
    assert Settings.from_env({"DATABASE_READ_URL": " "}).database_read_url is None
    url = "postgresql://u@replica:5432/telemetry"
    assert Settings.from_env({"DATABASE_READ_URL": url}).database_read_url == url
    with pytest.raises(ConfigurationError, match="DATABASE_READ_URL must start with one of postgresql://"):
        Settings.from_env({"DATABASE_READ_URL": "mysql://replica"})


@pytest.mark.parametrize(
    ("variable", "field", "default", "out_of_range"),
    [
        ("TELEMETRY_LATEST_PREFILL_INTERVAL", "latest_prefill_interval_s", 0.5, "-1"),
        ("TELEMETRY_ALERT_LINGER", "alert_linger_s", 0.05, "1.5"),
        ("TELEMETRY_INGEST_LINGER", "ingest_linger_s", 0.02, "2"),
    ],
)
def test_a_waiting_time_has_its_default_zero_turns_it_off_and_its_range_is_checked(
    variable: str, field: str, default: float, out_of_range: str
) -> None:
    assert getattr(Settings.from_env({}), field) == default
    assert getattr(Settings.from_env({variable: "0"}), field) == 0.0
    with pytest.raises(ConfigurationError, match=f"{variable} must be between 0"):
        Settings.from_env({variable: out_of_range})
