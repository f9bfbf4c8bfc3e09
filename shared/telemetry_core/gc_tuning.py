"""The cyclic garbage collector's thresholds for our long-running processes (TELEMETRY_GC_THRESHOLD).

Every point a process handles allocates container objects (a decoded Point struct and its tags dict, a row tuple,
psycopg's Jsonb wrappers), and a fetched batch keeps tens of thousands of them alive at once. With CPython's
default thresholds (700, 10, 10) a batch of 64 one-device messages of 1000 points triggered about 494 young, 45
middle and 4 full collections, each full one walking every object the process holds: the ingest worker's Python
per point took 10.89 µs, 8.18 µs tuned (`python -m tests.bench.gc_probe`, docs/benchmarks-gc.md); in the running
service the gateway's CPU per point fell to 0.60x and the ingest worker's to 0.80x (docs/benchmarks.md, "Before /
after the twelfth session"). None of these objects form reference cycles, so the collector finds nothing there;
it only has to run less often. Memory is reclaimed by reference counting as before: only cyclic garbage waits
for a collection.

``tune_gc`` freezes what start-up allocated (modules, the app, settings: never garbage, never scanned again) and
raises the young generation's threshold. ``TELEMETRY_GC_THRESHOLD=0`` keeps Python's defaults.
"""

import gc

import structlog

DEFAULT_THRESHOLD = 50_000
# Young collections between two of the middle generation, and middle between two full ones. With a young
# threshold of 50,000 a full collection comes after 10 x 20 young ones: about every 10 M allocations.
MIDDLE_EVERY = 20
FULL_EVERY = 10


def tune_gc(threshold: int, process: str) -> tuple[int, int, int]:
    """Freeze the objects allocated so far and set the collector's thresholds; return the thresholds in force.

    ``threshold`` 0 leaves Python's own thresholds (the objects are still frozen: start-up objects live as
    long as the process).
    """
    gc.collect()
    gc.freeze()
    if threshold > 0:
        gc.set_threshold(threshold, MIDDLE_EVERY, FULL_EVERY)
    thresholds: tuple[int, int, int] = gc.get_threshold()
    log = structlog.get_logger()
    log.info("gc tuned", process=process, gc_thresholds=list(thresholds), frozen_objects=gc.get_freeze_count())
    return thresholds
