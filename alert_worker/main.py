"""`telemetry alert-worker`: the alert engine for one device partition, until SIGTERM.

Scale out by running copies with TELEMETRY_ALERT_PARTITIONS=N and TELEMETRY_ALERT_PARTITION=0..N-1.
A second copy started for a partition that is already running waits (standby) on a PostgreSQL
advisory lock, so two copies never evaluate the same device; a copy whose lock connection drops
stops and exits (alert_worker/partition_lock.py).
"""

import asyncio
import os

from alert_worker import state_store
from alert_worker.emitter import SYSTEM, Emitter
from alert_worker.engine import Engine
from alert_worker.evaluator import Evaluator, partition_of
from alert_worker.partition_lock import hold_partition
from alert_worker.rules import RuleIndex
from telemetry_core.follower import Follower
from telemetry_core.logging import configure_logging
from telemetry_core.nats_conn import close_nats
from telemetry_core.pg_pool import make_pool
from telemetry_core.points_validator import PointsValidator
from telemetry_core.settings import Settings
from telemetry_core.topology import ALERT_EVENTS, EVENTS_STREAM, POINTS_STREAM, alert_engine_consumer
from telemetry_core.worker_runtime import start_worker
from telemetry_schemas.codecs import alert_event_decoder
from telemetry_schemas.events import AlertEvent, AlertResolved


async def serve(settings: Settings) -> None:
    """Connect, take the partition, restore state, and run the engine until a stop signal."""
    partition, partitions = settings.alert_partition, settings.alert_partitions
    log = configure_logging(settings, "alert-worker").bind(partition=f"{partition}/{partitions}")
    if partition >= partitions:
        raise SystemExit(f"TELEMETRY_ALERT_PARTITION must be below TELEMETRY_ALERT_PARTITIONS ({partitions})")
    spec = alert_engine_consumer(partition, partitions)
    validator = PointsValidator(settings.require_signing_key())
    rt = await start_worker(settings, f"alert-worker-{partition}", log)
    stop, nc, js, database_url = rt.stop, rt.nc, rt.js, rt.database_url
    await js.add_consumer(spec.stream, spec.config())
    lock = await hold_partition(database_url, spec.durable, stop, log)  # sets `stop` if the lock is lost
    if lock is None:  # stopped while standing by
        await close_nats(nc)
        return
    pool = make_pool(database_url, min_size=2, max_size=3, timeout_s=30.0)
    await pool.open(wait=True, timeout=30.0)
    rules = RuleIndex(js, log)
    await rules.follower.start()
    # Evaluating points before every rule is loaded would advance the checkpoint past missed alerts.
    await rules.follower.wait_caught_up(60.0)
    async with pool.connection() as conn:
        machines, checkpoint = await state_store.load(conn, spec.durable, POINTS_STREAM)
    # Machines of devices this partition no longer owns (partitioning moved from crc32 to POINTS slots)
    # would raise no-data alerts for devices whose points now go elsewhere.
    moved = [key for key in machines if partition_of(key[1], partitions) != partition]
    for key in moved:
        del machines[key]
    if moved:
        log.warning("machines_of_moved_devices_dropped", count=len(moved))
    evaluator = Evaluator(rules, machines, float(settings.alert_lateness_s), log)
    engine = Engine(js, pool, spec, evaluator, Emitter(nc, js, settings.event_prefix, log), partition=partition,
                    partitions=partitions, checkpoint=checkpoint, tick_s=settings.alert_tick_s, log=log,
                    validator=validator)  # fmt: skip

    def on_alert_event(event: AlertEvent, _seq: int) -> None:
        if isinstance(event, AlertResolved) and event.by != SYSTEM:
            engine.resolved_by_operator.put_nowait((event.alert_id, event.rule_id, event.device_id))

    alerts = Follower(js, EVENTS_STREAM, ALERT_EVENTS, alert_event_decoder.decode, on_alert_event, log)
    await alerts.start()
    log.info("alert_engine_ready", machines=len(machines), checkpoint=checkpoint, consumer=spec.durable)
    try:
        await engine.run(stop, lambda: rules.applied_seq)
    finally:
        log.info("stopping", points_evaluated=engine.points_evaluated, rule_errors=evaluator.rule_errors)
        await alerts.stop()
        await rules.follower.stop()
        await pool.close()
        await close_nats(nc)
        await lock.release()
    if lock.lost.is_set():  # a standby may own the partition now: exit so the supervisor restarts us
        raise SystemExit(f"alert-worker: lost the partition lock of {spec.durable}")


def main() -> None:
    """Entry point."""
    asyncio.run(serve(Settings.from_env(os.environ)))
