"""The client commands for people: send, tail, query, export, alerts, config (parsers: cli_parsers.py)."""

import argparse
import asyncio
import csv
import json
import re
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import IO, Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from telemetry_client.async_client import AsyncTelemetryClient
from telemetry_client.config import ConfigError, Target, current_env, resolve
from telemetry_client.errors import ServiceUnavailable, TelemetryApiError, TelemetryClientError
from telemetry_client.sync_client import TelemetryClient
from telemetry_schemas.api.alerts import AlertResponse
from telemetry_schemas.api.queries import MAX_QUERY_LIMIT, DataPoint, QueryRequest
from telemetry_schemas.api.stream import StreamedPoint, SubscribeRequest
from telemetry_schemas.values import Point

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNAVAILABLE, EXIT_AUTH = 0, 1, 2, 3, 4
_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


class UsageError(Exception):
    """A bad argument the parser could not see (a time, a tag)."""


def _err() -> Console:
    return Console(stderr=True, highlight=False)


def parse_value(text: str) -> Any:
    """A number, true/false or a JSON object or array as such; anything else as text ("21.5" is a number, "on" text)."""
    try:
        value = json.loads(text)
    except ValueError:
        return text
    return value if isinstance(value, int | float | bool | dict | list) else text


def parse_time(text: str, what: str) -> datetime:
    """RFC 3339 with a zone (a trailing Z included)."""
    try:
        ts = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise UsageError(f"{what}: {text!r} is not an RFC 3339 timestamp") from None
    if ts.tzinfo is None:
        raise UsageError(f"{what}: {text!r} needs a zone (e.g. Z)")
    return ts


def time_range(args: argparse.Namespace) -> tuple[datetime, datetime]:
    """[start, end) from --start/--end or --since."""
    end = parse_time(args.end, "--end") if args.end else datetime.now(UTC)
    if args.start:
        return parse_time(args.start, "--start"), end
    found = _DURATION.match(args.since)
    if not found:
        raise UsageError(f"--since: {args.since!r}; use e.g. 30s, 15m, 6h, 7d")
    return end - timedelta(seconds=int(found[1]) * _UNITS[found[2]]), end


def _tags(pairs: list[str]) -> dict[str, str]:
    tags = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise UsageError(f"--tag: {pair!r}; use KEY=VALUE")
        tags[key] = value
    return tags


def _cell(value: Any) -> str:
    return json.dumps(value, separators=(",", ":")) if isinstance(value, dict | list) else str(value)


# -- commands -----------------------------------------------------------------------------------------------
def cmd_send(target: Target, args: argparse.Namespace) -> int:
    """`telemetry send DEVICE METRIC VALUE`."""
    point = Point(
        timestamp=parse_time(args.time, "--time") if args.time else datetime.now(UTC),
        metric_name=args.metric_name, value=parse_value(args.value), unit=args.unit, tags=_tags(args.tag),
    )  # fmt: skip
    with TelemetryClient(target.url, target.api_key) as tc:
        answer = tc.send(args.device_id, point)
    print(f"stored {answer.metric_name}={_cell(point.value)} for {answer.device_id} at {point.timestamp.isoformat()}")
    return EXIT_OK


def _point_line(p: StreamedPoint) -> str:
    return f"{p.timestamp}  {p.device_id}  {p.metric_name}  {_cell(p.value)}" + (f" {p.unit}" if p.unit else "")


async def _tail(target: Target, args: argparse.Namespace) -> int:
    request = SubscribeRequest(
        device_ids=[args.device_id], metric_names=[args.metric_name] if args.metric_name else [],
        filter_condition=args.where, max_frequency=args.max_frequency,
    )  # fmt: skip
    what = f"{args.device_id}" + (f" {args.metric_name}" if args.metric_name else "")
    seen = 0
    async with AsyncTelemetryClient(target.url, target.api_key) as tc:
        _err().print(f"following {what} at {target.url} (Ctrl-C stops)")
        async for message in tc.stream(request):
            if message.dropped:
                _err().print(f"[yellow]{message.dropped} points dropped (this terminal read too slowly)[/]")
            for p in message.data_points:
                if args.json:
                    print(msgspec.json.encode(p).decode(), flush=True)
                else:
                    print(_point_line(p), flush=True)
                seen += 1
                if args.count is not None and seen >= args.count:
                    return EXIT_OK
    return EXIT_OK


def cmd_tail(target: Target, args: argparse.Namespace) -> int:
    """`telemetry tail DEVICE [METRIC]`: live points until Ctrl-C or --count."""
    return asyncio.run(_tail(target, args))


def _query_pages(tc: TelemetryClient, args: argparse.Namespace) -> Iterator[DataPoint]:
    start, end = time_range(args)
    interval = args.interval or (60 if args.agg else None)
    offset, left = 0, args.limit
    while left > 0:
        page = min(left, MAX_QUERY_LIMIT)
        request = QueryRequest(
            metrics=args.metric_name, devices=[args.device_id], start_time=start, end_time=end,
            aggregation=args.agg, interval=interval, limit=page, offset=offset,
        )  # fmt: skip
        answer = tc.query(request)
        yield from answer.data_points
        if len(answer.data_points) < page:
            return
        offset += page
        left -= page


def cmd_query(target: Target, args: argparse.Namespace) -> int:
    """`telemetry query DEVICE METRIC...`: a table, or CSV with --csv."""
    with TelemetryClient(target.url, target.api_key) as tc:
        points = list(_query_pages(tc, args))
    if args.csv:
        out = csv.writer(sys.stdout, lineterminator="\n")
        out.writerow(["timestamp", "device_id", "metric_name", "value", "unit"])
        for p in points:
            out.writerow([p.timestamp.isoformat(), p.device_id, p.metric_name, _cell(p.value), p.unit or ""])
        return EXIT_OK
    table = Table(
        "timestamp", "device", "metric", "value", "unit", title=f"{len(points)} point{'' if len(points) == 1 else 's'}"
    )
    for p in points:
        table.add_row(p.timestamp.isoformat(), p.device_id, p.metric_name, _cell(p.value), p.unit or "")
    Console(highlight=False).print(table)
    return EXIT_OK


def cmd_export(target: Target, args: argparse.Namespace) -> int:
    """`telemetry export`: GET /export/csv streamed to a file, with a progress bar."""
    start, end = time_range(args)
    out: IO[bytes] | None = None  # opened at the first chunk: a refused export (404, 422) leaves no empty file
    rows = 0
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
               TextColumn("{task.fields[rows]} rows"), TimeElapsedColumn())  # fmt: skip
    try:
        with TelemetryClient(target.url, target.api_key, timeout=300) as tc, \
             Progress(*columns, console=_err(), transient=False) as bar:  # fmt: skip
            task = bar.add_task(f"export to {args.output}", total=None, rows=0)
            for chunk in tc.export_csv(args.devices, args.metrics, start, end):
                if out is None:
                    out = sys.stdout.buffer if args.output == "-" else open(args.output, "wb")  # noqa: SIM115
                out.write(chunk)
                rows += chunk.count(b"\n")
                bar.update(task, advance=len(chunk), rows=max(rows - 1, 0))
    finally:
        if out is not None and out is not sys.stdout.buffer:
            out.close()
    _err().print(f"exported {max(rows - 1, 0)} rows to {args.output}")
    return EXIT_OK


def _alert_row(a: AlertResponse) -> list[str]:
    return [a.alert_id, a.triggered_at.isoformat(timespec="seconds"), str(a.level), str(a.status), a.device_id,
            a.metric_name, _cell(a.current_value), a.message]  # fmt: skip


def cmd_alerts(target: Target, args: argparse.Namespace) -> int:
    """`telemetry alerts list|ack|resolve`."""
    with TelemetryClient(target.url, target.api_key) as tc:
        if args.alerts_action == "list":
            page = tc.alerts(status=args.status, level=args.level, device_id=args.device, limit=args.limit)
            if args.json:
                print(msgspec.json.encode(page).decode())
                return EXIT_OK
            table = Table("alert_id", "triggered_at", "level", "status", "device", "metric", "value", "message",
                          title=f"{page.count} of {page.total} alerts ({page.active_count} active)")  # fmt: skip
            for a in page.alerts:
                table.add_row(*_alert_row(a))
            Console(highlight=False).print(table)
            return EXIT_OK
        change = tc.acknowledge if args.alerts_action == "ack" else tc.resolve
        alert = change(args.alert_id, args.note)
    print(f"{alert.alert_id} is now {alert.status}")
    return EXIT_OK


def cmd_config(target: Target, args: argparse.Namespace) -> int:
    """`telemetry config`: which url and key, and where each came from."""
    key = f"{target.api_key[:8]}… (from {target.key_from})" if target.api_key else "none"
    print(f"url: {target.url} (from {target.url_from})\nkey: {key}")
    return EXIT_OK


COMMANDS: dict[str, Callable[[Target, argparse.Namespace], int]] = {
    "send": cmd_send, "tail": cmd_tail, "query": cmd_query, "export": cmd_export, "alerts": cmd_alerts,
    "config": cmd_config,
}  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Resolve the target, run the command, and turn failures into one clear line and an exit code."""
    name = args.command
    err = _err()
    try:
        target = resolve(args.url, args.key, current_env(), args.config)
        return COMMANDS[name](target, args)
    except (ConfigError, UsageError) as exc:
        err.print(f"telemetry {name}: {exc}", markup=False)
        return EXIT_USAGE
    except ServiceUnavailable as exc:
        err.print(f"telemetry {name}: service unavailable ({exc.status or 'no connection'}): {exc.detail}",
                  markup=False)  # fmt: skip
        return EXIT_UNAVAILABLE
    except TelemetryApiError as exc:
        err.print(f"telemetry {name}: {exc.status} {exc.detail}", markup=False)
        return EXIT_AUTH if exc.status in (401, 403) else EXIT_REFUSED
    except TelemetryClientError as exc:
        err.print(f"telemetry {name}: {exc}", markup=False)
        return EXIT_UNAVAILABLE
    except (msgspec.ValidationError, ValueError) as exc:  # e.g. a metric name the contract refuses
        err.print(f"telemetry {name}: {exc}", markup=False)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
