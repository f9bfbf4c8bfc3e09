"""The alert engine's partition lock: the shared exclusive-ownership lock (telemetry_core/partition_lock.py).

Kept here so the engine's imports stay as they were; the projection worker's active/standby copies use the
same lock (one holder per name).
"""

from telemetry_core.partition_lock import PartitionLock, hold_partition, lock_key

__all__ = ["PartitionLock", "hold_partition", "lock_key"]
