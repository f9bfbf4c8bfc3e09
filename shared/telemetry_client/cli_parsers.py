"""Argument parsers of the client commands (send, tail, query, export, alerts, config).

Only argparse here: `telemetry gateway` and the workers build this parser too, so the client's
libraries (httpx, websockets, rich) are imported by cli_commands only when one of these commands runs.
"""

import argparse
from typing import Any

from telemetry_schemas.enums import AlertLevel, AlertStatus

COMMANDS = ("send", "tail", "query", "export", "alerts", "config")
EXIT_CODES = """exit codes: 0 done; 1 the service refused the request (its detail is printed);
  2 usage or configuration error; 3 the service is unreachable or unavailable (503/429 after retries);
  4 credentials refused (401/403); 130 interrupted"""


def _connection_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    group = common.add_argument_group("service (flag, else $TELEMETRY_URL / $TELEMETRY_API_KEY, else config file)")
    group.add_argument("--url", help="the gateway, e.g. http://127.0.0.1:8218")
    group.add_argument("--key", help="API key or JWT (prefer the environment: flags show in `ps`)")
    group.add_argument("--config", help="config file (default $TELEMETRY_CONFIG or ~/.config/telemetry/config.toml)")
    return common


def _time_range(p: argparse.ArgumentParser, default_since: str = "1h") -> None:
    p.add_argument(
        "--since", default=default_since, help=f"how far back from now: 30s, 15m, 6h, 7d (default {default_since})"
    )
    p.add_argument("--start", help="RFC 3339 start (overrides --since)")
    p.add_argument("--end", help="RFC 3339 end (default now)")


def add_parsers(sub: Any) -> None:
    """Add the client commands to the `telemetry` sub-parsers."""
    common = _connection_flags()
    kw: dict[str, Any] = {"parents": [common], "epilog": EXIT_CODES,
                          "formatter_class": argparse.RawDescriptionHelpFormatter}  # fmt: skip

    send = sub.add_parser("send", help="send one point", **kw)
    send.add_argument("device_id")
    send.add_argument("metric_name")
    send.add_argument("value", help="a number, true/false, a JSON object or array, or else text")
    send.add_argument("--unit")
    send.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="repeatable")
    send.add_argument("--time", help="RFC 3339 timestamp (default now)")

    tail = sub.add_parser("tail", help="follow a device's points live (Ctrl-C stops)", **kw)
    tail.add_argument("device_id")
    tail.add_argument("metric_name", nargs="?")
    tail.add_argument("--where", help='filter condition, e.g. "value > 25"')
    tail.add_argument("--max-frequency", type=int, default=100, help="ms between messages, 100-10000 (default 100)")
    tail.add_argument("--count", type=int, help="stop after this many points")
    tail.add_argument("--json", action="store_true", help="one JSON object per point")

    query = sub.add_parser("query", help="points of a device's metrics as a table or CSV", **kw)
    query.add_argument("device_id")
    query.add_argument("metric_name", nargs="+")
    _time_range(query)
    query.add_argument("--agg", choices=("avg", "min", "max", "sum", "count", "median", "p95", "p99"))
    query.add_argument("--interval", type=int, help="seconds per bucket with --agg (default 60)")
    query.add_argument("--limit", type=int, default=1000, help="points at most (pages of 10,000; default 1000)")
    query.add_argument("--csv", action="store_true", help="CSV on stdout instead of a table")

    export = sub.add_parser("export", help="export points to a CSV file (any size, with a progress bar)", **kw)
    export.add_argument("--device", action="append", required=True, dest="devices", help="repeatable")
    export.add_argument("--metric", action="append", required=True, dest="metrics", help="repeatable")
    _time_range(export, "24h")
    export.add_argument("-o", "--output", required=True, help="file to write (- for stdout)")

    alerts = sub.add_parser("alerts", help="list, acknowledge and resolve alerts", **kw)
    actions = alerts.add_subparsers(dest="alerts_action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="newest first", parents=[common])
    listing.add_argument("--status", choices=[s.value for s in AlertStatus])
    listing.add_argument("--level", choices=[v.value for v in AlertLevel])
    listing.add_argument("--device")
    listing.add_argument("--limit", type=int, default=50)
    listing.add_argument("--json", action="store_true", help="the API's answer as JSON")
    for action in ("ack", "resolve"):
        p = actions.add_parser(action, help=f"{'acknowledge' if action == 'ack' else 'resolve'} an alert",
                               parents=[common])  # fmt: skip
        p.add_argument("alert_id")
        p.add_argument("--note")

    sub.add_parser("config", help="show which service and credential the client commands use, and from where", **kw)


def run(args: argparse.Namespace) -> int:
    """Run the chosen client command; returns the exit code."""
    from telemetry_client import cli_commands

    return cli_commands.run(args)
