"""An ordered consumer starts at its ack floor, so the messages a dead predecessor held come first, in order.

A process that dies mid-batch leaves its fetched messages pending until ``ack_wait`` passes; its successor's
first fetch would get the messages *behind* them at once. A consumer that keeps a high-water-mark checkpoint
(the projections, the alert engines) would commit those newer messages first and, when the older ones are
redelivered, skip them as already applied: silently lost read-model updates, missed alerts (seen: device
statistics short by the batches in flight when the projection worker was killed).

nats-server 2.14 can reset a durable consumer's delivery state (``$JS.API.CONSUMER.RESET``, ADR-60): with
sequence 0 it delivers again from its ack floor, in stream order, pending messages included, each as a first
delivery. The runtime does that before its first fetch and treats the messages up to the last one delivered
before the reset as redeliveries (one at a time, named in the crash journal), as they are.
"""

import json

import structlog
from nats.js import JetStreamContext

from telemetry_core.errors import TransientError
from telemetry_core.nats_version import CONSEQUENCE, RESET_SINCE
from telemetry_core.topology import ConsumerSpec

_RESET_TIMEOUT_S = 5.0


async def restart_at_ack_floor(js: JetStreamContext, spec: ConsumerSpec, log: structlog.stdlib.BoundLogger) -> int:
    """Reset ``spec``'s consumer to its ack floor when messages are pending; the last stream sequence it had delivered.

    Returns 0 when nothing was pending (no reset needed) or the server is older than 2.14 (logged). NATS errors
    and timeouts go up (a cluster electing a consumer leader answers nothing for a moment): the caller retries.
    """
    info = await js.consumer_info(spec.stream, spec.durable)
    if not info.num_ack_pending:
        return 0
    nc = js._nc  # the JetStream context's own connection (nats-py has no call for this API yet)
    version = nc.connected_server_version
    if (version.major, version.minor) < RESET_SINCE:  # run anyway (TELEMETRY_ALLOW_OLD_NATS)
        log.error(
            "consumer_reset_unavailable", durable=spec.durable, pending=info.num_ack_pending,
            server=f"{version.major}.{version.minor}", consequence=CONSEQUENCE,
        )  # fmt: skip
        return 0
    delivered = info.delivered.stream_seq if info.delivered and info.delivered.stream_seq else 0
    prefix = getattr(js, "_prefix", "$JS.API")  # the JetStream API prefix (a domain changes it)
    reply = await nc.request(f"{prefix}.CONSUMER.RESET.{spec.stream}.{spec.durable}", b'{"seq":0}',
                             timeout=_RESET_TIMEOUT_S)  # fmt: skip
    answer = json.loads(reply.data)
    if "error" in answer:  # e.g. no consumer leader yet in a cluster
        raise TransientError(f"resetting consumer {spec.durable}: {answer['error'].get('description')}")
    log.info("consumer_restarted_at_ack_floor", durable=spec.durable, pending=info.num_ack_pending,
             ack_floor=info.ack_floor.stream_seq if info.ack_floor else 0, delivered=delivered)  # fmt: skip
    return delivered
