"""Build the command handlers: each aggregate's subjects, decoder, and the readers its writes wait for."""

from dataclasses import dataclass

from nats.aio.client import Client
from psycopg_pool import AsyncConnectionPool

from gateway.commands import alert_rules, alerts, metric_definitions
from gateway.commands.aggregate import Aggregate
from gateway.commands.alert_rules import AlertRuleCommands
from gateway.commands.alerts import AlertCommands
from gateway.commands.conditions import definitions_cache, read_model
from gateway.commands.engines_applied import alert_engines
from gateway.commands.metric_definitions import MetricDefinitionCommands
from gateway.commands.visibility import Visibility
from gateway.integration_events import IntegrationEvents
from gateway.publisher import CommandPublisher
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.topology import alert_subject, metric_subject, rule_subject
from telemetry_schemas.codecs import alert_event_decoder, metric_event_decoder, rule_event_decoder

# How long a write waits, in all, for its event to become visible (read-your-writes); durable either way.
VISIBLE_WITHIN_S = 5.0
# Rule writes promise < 50 ms with read-your-writes: their read model is looked at every 5 ms at most while a
# write waits (a rare write, a few cheap queries), rather than the default's 50 ms steps.
RULES_READ_MODEL_POLL_S = 0.005


@dataclass(frozen=True)
class Commands:
    """One handler per aggregate."""

    metrics: MetricDefinitionCommands
    rules: AlertRuleCommands
    alerts: AlertCommands


def build_commands(
    publisher: CommandPublisher,
    pool: AsyncConnectionPool,
    read_pool: AsyncConnectionPool,
    definitions: DefinitionsCache,
    announce: IntegrationEvents,
    nc: Client,
    within_s: float = VISIBLE_WITHIN_S,
) -> Commands:
    """Wire each aggregate to the readers a client may consult right after a write.

    Read models are waited for on ``read_pool``, where the views read them: with a replica configured
    (DATABASE_READ_URL) a write answers once the REPLICA shows its projection's checkpoint, which commits in
    the same transaction as the rows (the primary has it by then too). The alert engines' heartbeat rows are
    read on the primary ``pool``: they tell which engines are alive now, not what a client will read.
    """
    metrics = Aggregate(
        publisher, metric_subject, metric_event_decoder.decode,
        Visibility({"read_model": read_model(read_pool, metric_definitions.PROJECTION),
                    "validation_cache": definitions_cache(definitions)}, within_s),
    )  # fmt: skip
    rules = Aggregate(
        publisher, rule_subject, rule_event_decoder.decode,
        Visibility({"read_model": read_model(read_pool, alert_rules.PROJECTION, RULES_READ_MODEL_POLL_S),
                    "alert_engines": alert_engines(pool, nc)}, within_s),
    )  # fmt: skip
    alert_events = Aggregate(
        publisher, alert_subject, alert_event_decoder.decode,
        Visibility({"read_model": read_model(read_pool, alerts.PROJECTION)}, within_s),
    )  # fmt: skip
    return Commands(
        metrics=MetricDefinitionCommands(metrics, announce),
        rules=AlertRuleCommands(rules, announce, publisher.points_position),
        alerts=AlertCommands(alert_events, announce),
    )
