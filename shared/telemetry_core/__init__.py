"""Plumbing shared by two or more telemetry processes: settings, connections, topology, migrations."""

__version__ = "1.0.0"
SERVICE_NAME = "telemetry_service"
