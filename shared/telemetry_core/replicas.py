"""How many JetStream replicas each stream gets: TELEMETRY_STREAM_REPLICAS, or what the cluster offers.

A replicated stream (R3) keeps accepting writes while one of its three servers is down (a Raft quorum
of two), so an acknowledged point survives the loss of any one node. A single server can hold only
R1; asking for more replicas than the cluster has servers would leave every stream unplaceable, so
the process refuses to start and says why instead of failing on each publish.
"""

from typing import Any

from nats.aio.client import Client

from telemetry_core.errors import ConfigurationError

# R3 tolerates one lost server; R5 two, at the cost of two more copies of every write.
DEFAULT_CLUSTER_REPLICAS = 3


def cluster_size(nc: Client) -> int:
    """How many servers the connected server's cluster has: 1 when it is not clustered.

    From the server's INFO (the client keeps no public copy of it): ``cluster`` names the cluster and
    ``connect_urls`` lists every member's client address, itself included, as the routes gossip them.
    """
    info: dict[str, Any] = nc._server_info  # nats-py exposes INFO only here
    if not info.get("cluster"):
        return 1
    return max(1, len(set(info.get("connect_urls") or ())))


def resolve_replicas(asked: int | None, size: int, existing: int | None = None) -> int:
    """The replicas to create streams with, on a cluster of ``size`` servers; ConfigurationError if impossible.

    ``existing`` is the replicas the streams already have. A server that is down (restarting, in maintenance)
    is missing from ``size``: the streams made when it was there keep their replicas, neither refused nor
    scaled down by a process starting meanwhile.
    """
    if asked is None:
        return max(DEFAULT_CLUSTER_REPLICAS if size >= DEFAULT_CLUSTER_REPLICAS else 1, existing or 1)
    if asked > size and asked != existing:
        raise ConfigurationError(
            f"TELEMETRY_STREAM_REPLICAS={asked} but the NATS deployment has {size} JetStream server(s): "
            f"set it to at most {size}, or unset it (3 on a cluster of 3 or more, else 1)"
        )
    return asked
