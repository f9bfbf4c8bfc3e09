"""Who is calling and what they may do: the result of authenticating a connection."""

from dataclasses import dataclass, field

from telemetry_schemas.enums import ApiKeyScope


@dataclass(frozen=True)
class Principal:
    """An authenticated caller.

    ``subject`` is what commands record as created_by / acknowledged_by / resolved_by; ``limit_key``
    names the caller's rate-limit bucket; ``devices`` (when not empty) are the only devices whose
    points it may write.
    """

    subject: str
    scopes: frozenset[ApiKeyScope]
    kind: str  # "bootstrap", "apikey", "jwt" or "internal"
    limit_key: str
    devices: frozenset[str] = field(default_factory=frozenset)

    def may(self, needed: ApiKeyScope) -> bool:
        """Admin may do everything; ingest and read only what they name."""
        return ApiKeyScope.ADMIN in self.scopes or needed in self.scopes

    def may_write(self, device_id: str) -> bool:
        """Whether this caller may write points of ``device_id``."""
        return not self.devices or device_id in self.devices

    def describe_scopes(self) -> str:
        """The scopes, for 403 details."""
        return ", ".join(sorted(s.value for s in self.scopes)) or "none"
