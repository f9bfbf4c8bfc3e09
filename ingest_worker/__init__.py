"""The ingest worker: POINTS → PostgreSQL (COPY + upsert), ack after commit, then notices."""
