"""telemetry_client's pure parts: Retry-After parsing, the retry waits, flag > env > file, CLI values."""

from datetime import UTC, datetime
from email.utils import format_datetime
from pathlib import Path

import pytest
from tenacity import RetryCallState, Retrying

from telemetry_client.cli_commands import parse_value
from telemetry_client.config import DEFAULT_URL, ConfigError, resolve
from telemetry_client.errors import ServiceUnavailable
from telemetry_client.transport import Retryable, RetryPolicy, encode_body, retry_after_seconds

NOW = datetime(2026, 12, 3, 7, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "seconds"),
    [("3", 3.0), (" 0 ", 0.0), (format_datetime(datetime(2026, 12, 3, 7, 0, 7, tzinfo=UTC), usegmt=True), 7.0),
     (format_datetime(datetime(2026, 12, 3, 6, 0, 0, tzinfo=UTC), usegmt=True), 0.0),  # a date in the past: now
     ("soon", None), ("-1", None), ("", None), (None, None)],
)  # fmt: skip
def test_retry_after_is_seconds_or_an_http_date(header: str | None, seconds: float | None) -> None:
    assert retry_after_seconds(header, NOW) == seconds


def _wait_after(policy: RetryPolicy, exc: BaseException, attempt: int) -> float:
    state = RetryCallState(Retrying(), None, (), {})
    state.attempt_number = attempt
    state.set_exception((type(exc), exc, None))
    return float(policy.tenacity_args()["wait"](state))


def test_waits_follow_retry_after_capped_else_back_off_exponentially() -> None:
    policy = RetryPolicy(attempts=5, backoff=0.5, max_wait=10)
    told = Retryable(ServiceUnavailable(503, "x"), retry_after=4)
    assert _wait_after(policy, told, 1) == 4
    assert _wait_after(policy, Retryable(ServiceUnavailable(429, "x"), retry_after=3600), 1) == 10
    untold = Retryable(ServiceUnavailable(503, "x"))
    for attempt, low in ((1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0)):
        assert low <= _wait_after(policy, untold, attempt) <= low + 0.5
    assert _wait_after(policy, untold, 20) == 10


def test_only_bodies_worth_it_are_gzipped() -> None:
    small, small_headers = encode_body({"a": 1}, gzip_bodies=True)
    assert small == b'{"a":1}' and "Content-Encoding" not in small_headers
    big, big_headers = encode_body({"a": "x" * 5000}, gzip_bodies=True)
    assert big[:2] == b"\x1f\x8b" and big_headers["Content-Encoding"] == "gzip" and len(big) < 200
    plain, plain_headers = encode_body({"a": "x" * 5000}, gzip_bodies=False)
    assert len(plain) > 5000 and "Content-Encoding" not in plain_headers


def test_flag_beats_environment_beats_file_beats_default(tmp_path: Path) -> None:
    file = tmp_path / "config.toml"
    file.write_text('url = "http://from-file:1"\napi_key = "file-key"\n')
    env = {"TELEMETRY_CONFIG": str(file)}
    assert resolve(None, None, {}, str(tmp_path / "absent.toml")).url == DEFAULT_URL
    only_file = resolve(None, None, env, None)
    assert (only_file.url, only_file.api_key, only_file.key_from) == ("http://from-file:1", "file-key", str(file))
    with_env = resolve(None, None, {**env, "TELEMETRY_URL": "http://env:2/", "TELEMETRY_API_KEY": "env-key"})
    assert (with_env.url, with_env.api_key, with_env.url_from) == ("http://env:2", "env-key", "TELEMETRY_URL")
    flags = resolve("http://flag:3", "flag-key", {**env, "TELEMETRY_API_KEY": "env-key"})
    assert (flags.url, flags.api_key, flags.key_from) == ("http://flag:3", "flag-key", "--key")
    xdg = tmp_path / "xdg" / "telemetry"
    xdg.mkdir(parents=True)
    (xdg / "config.toml").write_text('api_key = "xdg-key"\n')
    assert resolve(None, None, {"XDG_CONFIG_HOME": str(tmp_path / "xdg")}).api_key == "xdg-key"


@pytest.mark.parametrize("text", ['url = "unterminated', "url = 5\n"])
def test_a_bad_config_file_is_named(tmp_path: Path, text: str) -> None:
    file = tmp_path / "config.toml"
    file.write_text(text)
    with pytest.raises(ConfigError, match=str(file)):
        resolve(None, None, {}, str(file))


@pytest.mark.parametrize(
    ("text", "value"),
    [("21.5", 21.5), ("7", 7), ("true", True), ('{"lat": 1, "lon": 2}', {"lat": 1, "lon": 2}), ("on", "on"),
     ('"quoted"', '"quoted"'), ("[1, 2]", [1, 2]), ("null", "null")],
)  # fmt: skip
def test_cli_values(text: str, value: object) -> None:
    assert parse_value(text) == value
