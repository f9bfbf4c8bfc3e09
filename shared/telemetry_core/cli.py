"""`telemetry` subcommands.

Process entry points are named as strings and imported lazily, so this module never imports
a process package (processes never import each other).
"""

import argparse
import importlib
import os
import secrets
import sys
from collections.abc import Callable
from typing import Any

from telemetry_core import __version__
from telemetry_core.errors import ConfigurationError

ENTRY_POINTS = {
    "run": "telemetry_core.devrun:main",
    "gateway": "gateway.main:main",
    "ingest-worker": "ingest_worker.main:main",
    "projection-worker": "projection_worker.main:main",
    "alert-worker": "alert_worker.main:main",
}
# The client commands for people (send, tail, query, export, alerts, config) live in telemetry_client:
# its parsers are added here, its code runs only for those commands.
CLIENT_COMMANDS = "telemetry_client.cli_parsers"


def _load(target: str) -> Callable[[], None]:
    module, _, func = target.partition(":")
    entry: Callable[[], None] = getattr(importlib.import_module(module), func)
    return entry


def _migrate() -> None:
    from telemetry_core.migrate import migrate
    from telemetry_core.settings import Settings

    settings = Settings.from_env(os.environ)
    if not settings.database_url:
        raise ConfigurationError("DATABASE_URL must be set for `telemetry migrate`")
    applied = migrate(settings.database_url)
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))


def _apikey(args: argparse.Namespace) -> None:
    if args.action is None:  # a bootstrap key, as before keys were data
        key = "tsk_" + secrets.token_urlsafe(24)
        print(key)
        print("Add it to TELEMETRY_API_KEYS (comma-separated) in the gateway's environment.", file=sys.stderr)
        return
    from telemetry_core import api_key_admin
    from telemetry_core.logging import configure_logging
    from telemetry_core.settings import Settings
    from telemetry_schemas.enums import ApiKeyScope

    settings = Settings.from_env(os.environ)
    configure_logging(settings, "apikey")  # logs to stderr: stdout carries only the answer
    if args.action == "create":
        devices = [d.strip() for d in (args.devices or "").split(",") if d.strip()]
        key_id, key = api_key_admin.create(settings, args.name, ApiKeyScope(args.scope), devices)
        print(f"key_id: {key_id}")
        print(f"key: {key}")
        print("The key is shown once and stored nowhere (only its SHA-256 digest is): keep it now.", file=sys.stderr)
    elif args.action == "revoke":
        done = api_key_admin.revoke(settings, args.key_id)
        print(f"revoked {args.key_id}" if done else f"{args.key_id} was already revoked")
    else:
        rows = api_key_admin.list_keys(settings)
        print("key_id\tname\tscope\tdevices\tcreated_at\tcreated_by\trevoked_at")
        for r in rows:
            revoked = r["revoked_at"].isoformat() if r["revoked_at"] else "-"
            allowed = ",".join(r["devices"]) or "*"
            print(f"{r['key_id']}\t{r['name']}\t{r['scope']}\t{allowed}\t{r['created_at'].isoformat()}\t"
                  f"{r['created_by']}\t{revoked}")  # fmt: skip


def _dlq(args: argparse.Namespace) -> None:
    import json

    from telemetry_core import dlq_admin
    from telemetry_core.settings import Settings

    settings = Settings.from_env(os.environ)
    if args.action == "list":
        found = dlq_admin.run(settings, lambda js: dlq_admin.letters(js, args.worker, args.limit))
        print("seq\tfailed_at\tworker\tsubject\treason")
        for item in found:
            d = item.letter
            reason = d.reason if len(d.reason) <= 120 else d.reason[:119] + "…"
            print(f"{item.seq}\t{d.failed_at.isoformat()}\t{d.worker}\t{d.subject}\t{reason}")
    elif args.action == "show":
        dead = dlq_admin.run(settings, lambda js: dlq_admin.letter(js, args.seq))
        print(json.dumps(dlq_admin.describe(args.seq, dead), indent=2, default=str))
    elif args.action == "retry":
        body = None
        if args.payload:
            with sys.stdin.buffer if args.payload == "-" else open(args.payload, "rb") as f:
                body = f.read()
        subject, seq = dlq_admin.run(settings, lambda js: dlq_admin.retry(js, args.seq, body))
        print(f"re-published dead letter {args.seq} to {subject} (POINTS seq {seq}); the dead letter is removed")
    else:
        removed = dlq_admin.run(settings, lambda js: dlq_admin.purge(js, args.worker, args.seq))
        print(f"purged {removed} dead letter(s)")


def _replay(args: argparse.Namespace) -> None:
    # An alert engine's state lives with the alert worker, points with the ingest worker, read models with the
    # projection worker (online: projection_worker/online_replay.py; --offline: projection_worker/replay.py).
    if args.projection.startswith("alerts_"):
        importlib.import_module("alert_worker.replay").main(args.projection)
    elif args.projection == "points":
        if not args.since:
            raise ConfigurationError("`telemetry replay points` needs --since <POINTS sequence | RFC 3339 time>")
        importlib.import_module("ingest_worker.replay_points").main(args.since)
    elif args.offline:
        importlib.import_module("projection_worker.replay").main(args.projection)
    else:
        importlib.import_module("projection_worker.online_replay").main(args.projection, args.allow_partial)


def _dlq_parser(sub: Any) -> None:
    dlq = sub.add_parser("dlq", help="look at dead letters and re-drive them after a fix (needs NATS_URL)")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)
    listing = actions.add_parser("list", help="the oldest dead letters: id (seq), time, worker, subject, reason")
    listing.add_argument("--worker", help="only this worker's letters (ingest, alert, projections …)")
    listing.add_argument("--limit", type=int, default=100)
    show = actions.add_parser("show", help="one dead letter in full: reason, original subject, headers, payload")
    show.add_argument("seq", type=int)
    retry = actions.add_parser("retry", help="re-publish a POINTS letter to its subject, then remove the letter")
    retry.add_argument("seq", type=int)
    retry.add_argument("--payload", help="a fixed copy of the message to send instead (a file, or - for stdin)")
    purge = actions.add_parser("purge", help="remove the given letters, or all (of --worker)")
    purge.add_argument("seq", type=int, nargs="*")
    purge.add_argument("--worker")


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and run one subcommand."""
    parser = argparse.ArgumentParser(prog="telemetry", description="IoT telemetry service")
    parser.add_argument("--version", action="version", version=f"telemetry {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    run = sub.add_parser(
        "run", help="start everything (embedded NATS + PostgreSQL unless NATS_URL/DATABASE_URL are set)"
    )
    run.add_argument(
        "--cluster",
        type=int,
        default=0,
        metavar="N",
        help="a JetStream cluster of N nats-server nodes and two copies of every process (clusterrun.py)",
    )
    sub.add_parser("gateway", help="serve the HTTP API (needs NATS_URL and DATABASE_URL)")
    sub.add_parser("ingest-worker", help="consume POINTS into PostgreSQL")
    sub.add_parser("projection-worker", help="build the read models")
    sub.add_parser("alert-worker", help="evaluate alert rules (one device partition per copy)")
    sub.add_parser("migrate", help="apply database migrations to DATABASE_URL")
    replay = sub.add_parser("replay", help="rebuild a read model from its stream while the service runs")
    replay.add_argument(
        "projection",
        help="latest_values, metric_definitions, rollups, alert_rules, alerts, api_keys, device_stats, "
        "dead_letter_stats, or all (online: shadow, catch up, swap); points --since (re-persist POINTS); "
        "or an alert engine alerts_<i>_of_<n> (stop its alert workers first)",
    )
    replay.add_argument("--since", help="for points: the POINTS sequence or RFC 3339 time to start from")
    replay.add_argument("--allow-partial", action="store_true", help="rebuild even if the stream lost old messages")
    replay.add_argument("--offline", action="store_true", help="the old way: reset and let the stopped worker rebuild")
    apikey = sub.add_parser("apikey", help="manage API keys (alone: print a random bootstrap key)")
    actions = apikey.add_subparsers(dest="action", metavar="ACTION")
    create = actions.add_parser("create", help="issue a key (shown once; needs NATS_URL and DATABASE_URL)")
    create.add_argument("--name", required=True, help="what the key is for (shown in `list`)")
    create.add_argument("--scope", required=True, choices=("ingest", "read", "admin"))
    create.add_argument("--devices", help="comma-separated device ids an ingest key may write (default: any)")
    actions.add_parser("list", help="every key with its scope and revocation (never the key itself)")
    revoke = actions.add_parser("revoke", help="revoke a key on every gateway within a second")
    revoke.add_argument("key_id", help="the key_id printed by create or list")
    _dlq_parser(sub)
    client = importlib.import_module(CLIENT_COMMANDS)
    client.add_parsers(sub)
    # Retention and online replay (issue 14): their parsers and code live in their own modules.
    from telemetry_core import retention_cli

    retention_cli.add_parser(sub)
    args = parser.parse_args(argv)
    if args.command in client.COMMANDS:
        raise SystemExit(client.run(args))
    try:
        if args.command == "migrate":
            _migrate()
        elif args.command == "apikey":
            _apikey(args)
        elif args.command == "dlq":
            _dlq(args)
        elif args.command == "run" and args.cluster:
            from telemetry_core.clusterrun import main as run_cluster

            run_cluster(args.cluster)
        elif args.command == "retention":
            retention_cli.main(args)
        elif args.command == "replay":
            # An alert engine's state lives with the alert worker; a read model's with the projection worker.
            _replay(args)
        else:
            _load(ENTRY_POINTS[args.command])()
    except ConfigurationError as exc:
        print(f"telemetry {args.command}: configuration error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None


if __name__ == "__main__":
    main()
