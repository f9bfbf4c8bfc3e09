"""`telemetry alert-worker`: the alert engine for one device partition, until SIGTERM.

Scale out by running copies with TELEMETRY_ALERT_PARTITIONS=N and TELEMETRY_ALERT_PARTITION=0..N-1.
A second copy started for a partition that is already running waits (standby) on a PostgreSQL
advisory lock, so two copies never evaluate the same device. The lock is held on a watched connection:
if it drops, this copy stops and exits non-zero (alert_worker/partition_lock.py).
"""

import os

from psycopg_pool import AsyncConnectionPool

from alert_worker import state_store
from alert_worker.emitter import Emitter
from alert_worker.engine import HOOK_S, Engine
from alert_worker.evaluator import Evaluator, partition_of
from alert_worker.partition_lock import hold_partition
from alert_worker.rules import RuleIndex
from alert_worker.rules_applied import AppliedResponder
from telemetry_core import event_loop
from telemetry_core.alerting.state_machine import Machine
from telemetry_core.consumer_runtime import ConsumerRuntime, Policy
from telemetry_core.events_out import events_out
from telemetry_core.follower import Follower
from telemetry_core.gc_tuning import tune_gc
from telemetry_core.logging import configure_logging
from telemetry_core.points_validator import consumer_validator
from telemetry_core.retry import while_transient
from telemetry_core.settings import Settings
from telemetry_core.stream_guard import StreamChanged, StreamGuard
from telemetry_core.topology import ALERT_EVENTS, EVENTS_STREAM, POINTS_STREAM, ConsumerSpec, alert_engine_consumer
from telemetry_core.worker_runtime import WorkerRuntime, run_worker
from telemetry_schemas.codecs import alert_event_decoder
from telemetry_schemas.events import AlertEvent, AlertResolved


async def _load_state(pool: AsyncConnectionPool, spec: ConsumerSpec) -> tuple[dict[state_store.Key, Machine], int]:
    async with pool.connection() as conn:
        return await state_store.load(conn, spec.durable, POINTS_STREAM)


async def consume(rt: WorkerRuntime, settings: Settings, partition: int, partitions: int) -> None:
    """Take the partition, restore state, and run the engine on the consumer runtime until the stop signal."""
    spec = alert_engine_consumer(partition, partitions)
    log = rt.log
    # JetStream API requests before the engine runs ride out a NATS node lost meanwhile (retry.while_transient).
    await rt.until_stopped(while_transient(lambda: rt.js.add_consumer(spec.stream, spec.config())))
    validator = consumer_validator(settings.require_signing_key())
    # The lock sits on a watched connection of its own; losing it sets rt.stop (a standby may take over).
    lock = await hold_partition(rt.database_url, spec.durable, rt.stop, log)
    if lock is None:  # stopped while standing by
        return
    rt.at_exit("release_partition", lock.release)  # registered first, so it runs after the pool closes
    pool = await rt.open_pool(min_size=2, max_size=3)
    rules = RuleIndex(rt.js, log)
    rt.at_exit("stop_rules", rules.follower.stop)
    await rt.until_stopped(rules.follower.start())
    # Evaluating points before every rule is loaded would advance the checkpoint past missed alerts. The 60 s bounds
    # a stall (nothing applied for that long), not the replay: a long rule history takes what it takes.
    await rt.until_stopped(rules.follower.wait_caught_up(60.0))
    machines, checkpoint = await rt.until_stopped(_load_state(pool, spec))
    # Machines of devices this partition no longer owns (partitioning moved from crc32 to POINTS slots)
    # would raise no-data alerts for devices whose points now go elsewhere.
    moved = [key for key in machines if partition_of(key[1], partitions) != partition]
    for key in moved:
        del machines[key]
    if moved:
        log.warning("machines_of_moved_devices_dropped", count=len(moved))
    # Where this engine resumes on POINTS: rule changes made up to there are in force, later ones wait for their
    # points (alert_worker/rules.py). The runtime resumes at the consumer's ack floor, which may be past the saved
    # checkpoint (a batch that changed nothing is acknowledged before its position is saved).
    info = await rt.until_stopped(while_transient(lambda: rt.js.consumer_info(spec.stream, spec.durable)))
    ack_floor = info.ack_floor.stream_seq if info.ack_floor is not None and info.ack_floor.stream_seq else 0
    rules.reach(max(checkpoint, ack_floor))
    evaluator = Evaluator(rules, machines, float(settings.alert_lateness_s), log)
    emitter = Emitter(rt.js, events_out(rt.nc, settings.event_prefix, log), log)
    # The machines describe the stream their checkpoint counts in: a POINTS stream created again (or one that
    # lost its tail) stops this engine rather than let it skip new points (telemetry_core/stream_guard.py).
    fix = f"stop this partition's alert workers, run `telemetry replay {spec.durable}`, start them"
    guard = StreamGuard(rt.nc, rt.js, pool, consumer=spec.durable, stream=POINTS_STREAM, log=log, fix=fix)
    engine = Engine(rt.js, pool, spec, evaluator, emitter, partition=partition, partitions=partitions,
                    checkpoint=checkpoint, tick_s=settings.alert_tick_s, rules_seq=lambda: rules.applied_seq,
                    log=log, validator=validator, guard=guard)  # fmt: skip

    def on_alert_event(event: AlertEvent, _seq: int) -> None:
        # Resolutions by an operator or by the platform-events handler (device deleted) close the machine. The
        # engine's own resolutions come back here too and are no-ops: on_manual_resolve matches the open alert id.
        if isinstance(event, AlertResolved):
            engine.resolved_by_operator.put_nowait((event.alert_id, event.rule_id, event.device_id))

    # Gateways holding a rule write ask whether this engine applied it: answered as soon as it has.
    responder = AppliedResponder(rt.nc, spec.durable, rules.follower, log)
    rt.at_exit("stop_rules_applied", responder.stop)
    await rt.until_stopped(responder.start())
    alerts = Follower(rt.js, EVENTS_STREAM, ALERT_EVENTS, alert_event_decoder.decode, on_alert_event, log)
    rt.at_exit("stop_alert_events", alerts.stop)
    await rt.until_stopped(alerts.start())
    log.info("alert_engine_ready", machines=len(machines), checkpoint=checkpoint, consumer=spec.durable)
    # Several small messages in a fetch (many writers of a few points each) wait alert_linger_s for more: one
    # evaluation pass, save and fetch for them all. A lone message is evaluated at once. Safe for rule changes:
    # each governs the points after its points_seq however late the engine evaluates them (alert_worker/rules.py).
    policy = Policy(batch=256, max_deliveries=settings.max_deliveries, ordered=True,
                    fetch_timeout_s=min(settings.alert_tick_s, HOOK_S), linger_s=settings.alert_linger_s,
                    linger_min=2)  # fmt: skip
    runtime = ConsumerRuntime(rt.js, spec, spec.durable, engine.handle, rt.stop, log, policy,
                              tick=engine.tick, tick_s=min(settings.alert_tick_s, HOOK_S), guard=guard)  # fmt: skip
    try:
        await runtime.run()
    except StreamChanged as exc:
        # Exit non-zero: a supervisor restarts us, and every start stops here again until the replay.
        raise SystemExit(f"alert-worker: {exc}") from None
    finally:
        log.info("stopping", points_evaluated=engine.points_evaluated, rule_errors=evaluator.rule_errors)
    if lock.lost.is_set():  # a standby may own the partition now: exit non-zero so the supervisor restarts us
        raise SystemExit(f"alert-worker: lost the partition lock of {spec.durable}")


async def serve(settings: Settings) -> None:
    """Run the engine of this copy's partition until a stop signal."""
    partition, partitions = settings.alert_partition, settings.alert_partitions
    log = configure_logging(settings, "alert-worker").bind(partition=f"{partition}/{partitions}")
    tune_gc(settings.gc_threshold, "alert-worker")
    if partition >= partitions:
        raise SystemExit(f"TELEMETRY_ALERT_PARTITION must be below TELEMETRY_ALERT_PARTITIONS ({partitions})")
    await run_worker(
        settings, f"alert-worker-{partition}", log, lambda rt: consume(rt, settings, partition, partitions)
    )


def main() -> None:
    """Entry point."""
    event_loop.run(serve(Settings.from_env(os.environ)))
