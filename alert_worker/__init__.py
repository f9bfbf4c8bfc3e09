"""The alert engine: per-(rule, device) state machines over POINTS, transitions published to EVENTS."""
