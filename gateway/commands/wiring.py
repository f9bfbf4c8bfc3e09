"""Build the command handlers: each aggregate's subjects, decoder, and the readers its writes wait for."""

from dataclasses import dataclass

from psycopg_pool import AsyncConnectionPool

from gateway.commands import alert_rules, alerts, metric_definitions
from gateway.commands.aggregate import Aggregate
from gateway.commands.alert_rules import AlertRuleCommands
from gateway.commands.alerts import AlertCommands
from gateway.commands.conditions import alert_engines, definitions_cache, read_model
from gateway.commands.metric_definitions import MetricDefinitionCommands
from gateway.commands.visibility import Visibility
from gateway.integration_events import IntegrationEvents
from gateway.publisher import CommandPublisher
from telemetry_core.definitions_cache import DefinitionsCache
from telemetry_core.topology import alert_subject, metric_subject, rule_subject
from telemetry_schemas.codecs import alert_event_decoder, metric_event_decoder, rule_event_decoder

# How long a write waits, in all, for its event to become visible (read-your-writes); durable either way.
VISIBLE_WITHIN_S = 5.0


@dataclass(frozen=True)
class Commands:
    """One handler per aggregate."""

    metrics: MetricDefinitionCommands
    rules: AlertRuleCommands
    alerts: AlertCommands


def build_commands(
    publisher: CommandPublisher,
    pool: AsyncConnectionPool,
    definitions: DefinitionsCache,
    announce: IntegrationEvents,
    within_s: float = VISIBLE_WITHIN_S,
) -> Commands:
    """Wire each aggregate to the readers a client may consult right after a write."""
    metrics = Aggregate(
        publisher, metric_subject, metric_event_decoder.decode,
        Visibility({"read_model": read_model(pool, metric_definitions.PROJECTION),
                    "validation_cache": definitions_cache(definitions)}, within_s),
    )  # fmt: skip
    rules = Aggregate(
        publisher, rule_subject, rule_event_decoder.decode,
        Visibility({"read_model": read_model(pool, alert_rules.PROJECTION), "alert_engines": alert_engines(pool)},
                   within_s),
    )  # fmt: skip
    alert_events = Aggregate(
        publisher, alert_subject, alert_event_decoder.decode,
        Visibility({"read_model": read_model(pool, alerts.PROJECTION)}, within_s),
    )  # fmt: skip
    return Commands(
        metrics=MetricDefinitionCommands(metrics, announce),
        rules=AlertRuleCommands(rules, announce),
        alerts=AlertCommands(alert_events, announce),
    )
