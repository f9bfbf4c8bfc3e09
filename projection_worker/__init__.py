"""The projection worker: builds read models from stored notices and domain events."""
