"""The NATS headers we set and read."""

MSG_ID = "Nats-Msg-Id"
EXPECTED_LAST_SUBJECT_SEQ = "Nats-Expected-Last-Subject-Sequence"
REQUEST_ID = "X-Request-Id"
# HMAC-SHA256 of a POINTS message body under TELEMETRY_SIGNING_KEY: "these points were admitted"
# (by the gateway, or by the ingest worker for a directly published message). See points_validator.
SIGNATURE = "X-Telemetry-Signature"
