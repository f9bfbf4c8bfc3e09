"""The NATS headers we set and read."""

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
REQUEST_ID = "X-Request-Id"
VALIDATED = "X-Telemetry-Validated"
