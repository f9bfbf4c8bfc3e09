"""What an alert engine replies on RULES_APPLIED: which engine, and the last rule event it applied.

Shared by the engines that answer (alert_worker/rules_applied.py) and the gateways that ask before a rule
write answers (gateway/commands/engines_applied.py).
"""

import msgspec


class Applied(msgspec.Struct, frozen=True):
    """One engine's reply: its partition (its telemetry.alert_engines row) and its applied rule sequence."""

    partition: str
    rules_seq: int


applied_encoder = msgspec.json.Encoder()
applied_decoder = msgspec.json.Decoder(Applied)
