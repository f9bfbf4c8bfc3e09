"""Platform events in (FR-020): device.deleted and user.deleted from other services, consumed durably.

Why the projection worker: it is the one process that already consumes streams once per service (not once
per partition, as the alert engine does) and owns the read models user.deleted must rewrite. device.deleted
changes rules and alerts the event-sourced way, by appending events to EVENTS (conditional on each subject's
last sequence, like the gateway's commands), so the alert engine, the read models and `telemetry replay`
all see the same history.

Both are idempotent: every step first reads whether it is still needed (is the device still a target, is
the alert still open, does the subscription still exist, does the user still appear), and a resolution uses
the engine's own message id (``<alert_id>:resolved``), so JetStream drops a second one. A message delivered
twice therefore changes nothing the second time.
"""

from datetime import UTC, datetime

import msgspec
import structlog
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.errors import APIError, KeyNotFoundError, NoKeysError, NotFoundError
from psycopg_pool import AsyncConnectionPool

from telemetry_core.consumer_runtime import Rejected
from telemetry_core.erased_principals import principal_sha256
from telemetry_core.errors import TransientError
from telemetry_core.headers import EXPECTED_LAST_SUBJECT_SEQ, MSG_ID
from telemetry_core.settings import Settings
from telemetry_core.topology import EVENTS_STREAM, POINTS_STREAM, SUBSCRIPTIONS_BUCKET, alert_subject, rule_subject
from telemetry_schemas.codecs import alert_event_decoder, json_encoder, rule_event_decoder
from telemetry_schemas.events import (
    AlertResolved,
    AlertRuleCreated,
    AlertRuleDeleted,
    AlertRuleEnabled,
    AlertRuleUpdated,
)
from telemetry_schemas.integration import ANONYMOUS, DeviceDeleted, UserDeleted
from telemetry_schemas.rules import RuleSpec

WORKER = "platform"
SYSTEM = "system"
DEVICE_DELETED_NOTE = "device deleted"
_WRONG_LAST_SEQUENCE = 10071

_OPEN_ALERTS = "SELECT alert_id, rule_id FROM telemetry.alerts WHERE device_id = %s AND status <> 'resolved'"
_TARGETING_RULES = "SELECT rule_id FROM telemetry.alert_rules WHERE (spec::jsonb -> 'device_ids') ? %s"
# (table, column) of every read-model column that names a person.
PRINCIPAL_COLUMNS = (
    ("alert_rules", "created_by"),
    ("alerts", "acknowledged_by"),
    ("alerts", "resolved_by"),
    ("metric_definitions", "created_by"),
    ("api_keys", "created_by"),
    ("api_keys", "revoked_by"),
)
# Recorded first, so the read models' triggers (migration 0011) anonymise the user in every later write too:
# events on EVENTS are immutable and still name the user, and a replay re-applies them.
_ERASE = "INSERT INTO telemetry.erased_principals (principal_sha256) VALUES (%s) ON CONFLICT DO NOTHING"
_device_deleted = msgspec.json.Decoder(DeviceDeleted)
_user_deleted = msgspec.json.Decoder(UserDeleted)


class RuleState(msgspec.Struct, kw_only=True):
    """A rule folded from its events: its spec, whether enabled, deleted, and its subject's last sequence."""

    spec: RuleSpec | None = None
    enabled: bool = False
    deleted: bool = False
    seq: int = 0


async def rule_state(js: JetStreamContext, rule_id: str) -> RuleState:
    """Fold the rule's events (few per rule) from EVENTS: the true state, not the read model's."""
    state, seq = RuleState(), 1
    while True:
        try:
            raw = await js.get_msg(EVENTS_STREAM, seq=seq, subject=rule_subject(rule_id), next=True)
        except NotFoundError:
            return state
        assert raw.seq is not None
        event = rule_event_decoder.decode(raw.data or b"")
        if isinstance(event, AlertRuleCreated | AlertRuleUpdated):
            state.spec, state.enabled = event.rule, event.rule.enabled
        elif isinstance(event, AlertRuleEnabled):
            state.enabled = event.enabled
        elif isinstance(event, AlertRuleDeleted):
            state.deleted = True
        state.seq = seq = raw.seq
        seq += 1


class PlatformEventsHandler:
    """The consumer runtime's handler for stream PLATFORM (one message at a time, in order)."""

    def __init__(
        self, pool: AsyncConnectionPool, js: JetStreamContext, settings: Settings, log: structlog.stdlib.BoundLogger
    ) -> None:
        self._pool, self._js, self._log = pool, js, log
        self._device_subject = settings.device_deleted_subject
        self._user_subject = settings.user_deleted_subject

    async def __call__(self, msgs: list[Msg]) -> list[Rejected]:
        """Apply each deletion; an undecodable message is rejected (dead-lettered) with the reason."""
        rejected: list[Rejected] = []
        for msg in msgs:
            try:
                if msg.subject == self._device_subject:
                    await self.device_deleted(_device_deleted.decode(msg.data).device_id)
                elif msg.subject == self._user_subject:
                    await self.user_deleted(_user_deleted.decode(msg.data).user_id)
                else:
                    rejected.append(Rejected(msg, f"no handler for subject {msg.subject!r}"))
            except msgspec.ValidationError as exc:
                rejected.append(Rejected(msg, f"not a {msg.subject} event: {exc}"))
            except msgspec.DecodeError as exc:
                rejected.append(Rejected(msg, f"not a {msg.subject} event: JSON is malformed: {exc}"))
        return rejected

    async def _append(self, subject: str, event: msgspec.Struct, expected_seq: int, msg_id: str | None = None) -> None:
        headers = {EXPECTED_LAST_SUBJECT_SEQ: str(expected_seq)}
        if msg_id:
            headers[MSG_ID] = msg_id
        try:
            await self._js.publish(subject, json_encoder.encode(event), headers=headers, timeout=5.0)
        except APIError as exc:
            if exc.err_code == _WRONG_LAST_SEQUENCE:  # someone wrote meanwhile: read again and redo (idempotent)
                raise TransientError(f"{subject} changed concurrently") from exc
            raise

    async def device_deleted(self, device_id: str) -> None:
        """Resolve the device's open alerts, drop it from rule targets, cancel its own subscriptions."""
        async with self._pool.connection() as conn:
            alerts = await (await conn.execute(_OPEN_ALERTS, (device_id,))).fetchall()
            rules = [r[0] for r in await (await conn.execute(_TARGETING_RULES, (device_id,))).fetchall()]
        resolved = 0
        for alert_id, rule_id in alerts:
            resolved += await self._resolve(alert_id, rule_id, device_id)
        changed = 0
        for rule_id in rules:
            changed += await self._untarget(rule_id, device_id)
        cancelled = await self._cancel_subscriptions(device_id)
        self._log.info("device_deleted_applied", device_id=device_id, alerts_resolved=resolved,
                       rules_changed=changed, subscriptions_cancelled=cancelled)  # fmt: skip

    async def _resolve(self, alert_id: str, rule_id: str, device_id: str) -> bool:
        subject = alert_subject(alert_id)
        try:
            last = await self._js.get_msg(EVENTS_STREAM, subject=subject)
        except NotFoundError:
            return False
        if isinstance(alert_event_decoder.decode(last.data or b""), AlertResolved):
            return False  # resolved already (by the engine, an operator, or an earlier delivery)
        assert last.seq is not None
        event = AlertResolved(alert_id=alert_id, rule_id=rule_id, device_id=device_id, at=datetime.now(UTC),
                              by=SYSTEM, note=DEVICE_DELETED_NOTE)  # fmt: skip
        # The engine's own message id for a resolution: whichever of the two comes second is dropped.
        await self._append(subject, event, last.seq, msg_id=f"{alert_id}:resolved")
        return True

    async def _untarget(self, rule_id: str, device_id: str) -> bool:
        state = await rule_state(self._js, rule_id)
        if state.spec is None or state.deleted or device_id not in state.spec.device_ids:
            return False
        now = datetime.now(UTC)
        # A change like an operator's: it governs the points accepted after it (telemetry_schemas/events.py).
        at_points = (await self._js.stream_info(POINTS_STREAM)).state.last_seq or 0
        remaining = [d for d in state.spec.device_ids if d != device_id]
        if remaining:
            spec = msgspec.structs.replace(state.spec, device_ids=remaining)
            updated = AlertRuleUpdated(rule_id=rule_id, rule=spec, at=now, by=SYSTEM, points_seq=at_points)
            await self._append(rule_subject(rule_id), updated, state.seq)
            return True
        # An empty device_ids means "every device": a rule that targeted only this device is disabled instead.
        if not state.enabled:
            return False
        disabled = AlertRuleEnabled(rule_id=rule_id, enabled=False, at=now, by=SYSTEM, points_seq=at_points)
        await self._append(rule_subject(rule_id), disabled, state.seq)
        return True

    async def _cancel_subscriptions(self, device_id: str) -> int:
        """Delete the subscriptions that name only this device (the gateways close their sockets on the marker)."""
        kv = await self._js.key_value(SUBSCRIPTIONS_BUCKET)
        try:
            keys = await kv.keys()
        except NoKeysError:
            return 0
        cancelled = 0
        for key in keys:
            try:
                entry = await kv.get(key)
            except KeyNotFoundError:  # also KeyDeletedError: cancelled meanwhile
                continue
            try:
                device_ids = msgspec.json.decode(entry.value or b"{}").get("device_ids")
            except (msgspec.DecodeError, AttributeError):
                continue
            if device_ids == [device_id]:
                await kv.delete(key)
                cancelled += 1
        return cancelled

    async def user_deleted(self, user_id: str) -> None:
        """Replace the user by ``deleted-user`` in every read-model column that names a person, now and in later writes.

        One transaction; a second delivery changes no row.
        """
        if user_id == ANONYMOUS:
            return
        counts: dict[str, int] = {}
        async with self._pool.connection() as conn, conn.transaction():
            await conn.execute(_ERASE, (principal_sha256(user_id),))
            for table, column in PRINCIPAL_COLUMNS:
                # Identifiers come from the constant above, never from input.
                cur = await conn.execute(
                    f"UPDATE telemetry.{table} SET {column} = %s WHERE {column} = %s",  # noqa: S608
                    (ANONYMOUS, user_id),
                )
                counts[f"{table}.{column}"] = cur.rowcount
        self._log.info("user_deleted_applied", rows=counts)
