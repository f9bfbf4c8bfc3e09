"""`telemetry retention run [--dry-run]`: run the retention job once, now, and print what it removed."""

import argparse
import asyncio
import os
from typing import Any

from telemetry_core.errors import ConfigurationError
from telemetry_core.settings import Settings


def add_parser(sub: Any) -> None:
    """The `retention` subcommand."""
    retention = sub.add_parser("retention", help="remove points and rollups past their retention (needs DATABASE_URL)")
    actions = retention.add_subparsers(dest="action", metavar="ACTION", required=True)
    run = actions.add_parser(
        "run", help="run the retention job once (workers also run it every TELEMETRY_RETENTION_INTERVAL)"
    )
    run.add_argument("--dry-run", action="store_true", help="count what would be removed; remove nothing")


def main(args: argparse.Namespace) -> None:
    """Run once and print the report."""
    settings = Settings.from_env(os.environ)
    if not settings.database_url:
        raise ConfigurationError("DATABASE_URL must be set for `telemetry retention`")
    # Imported here: the `telemetry` command line parses every subcommand, and the client commands need no psycopg.
    from telemetry_core.retention import run_retention

    report = asyncio.run(run_retention(settings.database_url, settings, dry_run=args.dry_run))
    print(report.summary())
    for part in report.partitions_dropped:
        print(f"  partition telemetry.{part}: {'would be ' if report.dry_run else ''}dropped")
