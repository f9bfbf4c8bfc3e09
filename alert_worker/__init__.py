"""The alert engine (rules, per-(rule, device) state machines). Arrives with the alerting issue."""
