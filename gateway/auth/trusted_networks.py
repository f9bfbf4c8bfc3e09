"""Whether ``X-Internal-Call: true`` is honoured: only when the operator turned it on, only from trusted networks.

The original service let anyone skip authentication with this header; here it is off by default.
"""

import ipaddress

from telemetry_core.settings import Settings


class InternalCalls:
    """Decides whether a connection's X-Internal-Call header counts."""

    def __init__(self, settings: Settings) -> None:
        self.enabled = settings.trust_internal_calls
        self._networks = [ipaddress.ip_network(n, strict=False) for n in settings.trusted_networks]

    def trusted(self, header: str | None, client_host: str | None) -> bool:
        """True only if enabled, the header is ``true`` and the peer address is inside a trusted network."""
        if not self.enabled or header is None or header.strip().lower() != "true" or not client_host:
            return False
        try:
            address = ipaddress.ip_address(client_host)
        except ValueError:
            return False
        return any(address in network for network in self._networks)
