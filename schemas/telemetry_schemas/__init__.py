"""Wire contracts of the telemetry service: msgspec Structs for HTTP bodies and stream messages.

Depends on msgspec and the standard library only, and does no I/O.
"""
