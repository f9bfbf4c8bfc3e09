"""Where the CLI finds the service and the credential: flag, else environment, else config file.

The config file is TOML, ``$TELEMETRY_CONFIG`` or ``$XDG_CONFIG_HOME/telemetry/config.toml`` (default
``~/.config/telemetry/config.toml``)::

    url = "https://telemetry.example.com"
    api_key = "tsk_..."
"""

import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

DEFAULT_URL = "http://127.0.0.1:8218"
URL_ENV = "TELEMETRY_URL"
KEY_ENV = "TELEMETRY_API_KEY"
CONFIG_ENV = "TELEMETRY_CONFIG"


class ConfigError(Exception):
    """The config file cannot be used (unreadable, not TOML, wrong types)."""


@dataclass(frozen=True)
class Target:
    """The service to talk to and how each part was chosen (shown by ``telemetry config``)."""

    url: str
    api_key: str | None
    url_from: str
    key_from: str


def config_path(env: Mapping[str, str], given: str | None = None) -> Path:
    """The config file to read: ``--config``, else $TELEMETRY_CONFIG, else the XDG location."""
    if given:
        return Path(given).expanduser()
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser()
    base = Path(env["XDG_CONFIG_HOME"]) if env.get("XDG_CONFIG_HOME") else Path.home() / ".config"
    return base / "telemetry" / "config.toml"


def read_config(path: Path) -> dict[str, str]:
    """The file's url / api_key (absent file: nothing)."""
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: {exc}") from None
    found: dict[str, str] = {}
    for key in ("url", "api_key"):
        if key in data:
            if not isinstance(data[key], str):
                raise ConfigError(f"{path}: {key} must be a string")
            found[key] = data[key]
    return found


def resolve(url: str | None, api_key: str | None, env: Mapping[str, str], config: str | None = None) -> Target:
    """Each setting from the first place that has it: flag, environment, config file, default."""
    path = config_path(env, config)
    file = read_config(path)
    url_from, key_from = "default", "none"
    chosen_url, chosen_key = DEFAULT_URL, None
    for value, source in ((file.get("url"), str(path)), (env.get(URL_ENV), URL_ENV), (url, "--url")):
        if value:
            chosen_url, url_from = value, source
    for value, source in ((file.get("api_key"), str(path)), (env.get(KEY_ENV), KEY_ENV), (api_key, "--key")):
        if value:
            chosen_key, key_from = value, source
    return Target(chosen_url.rstrip("/"), chosen_key, url_from, key_from)


def current_env() -> Mapping[str, str]:
    """The process environment (the one place this package reads it)."""
    return os.environ
