"""The HTTP gateway: validates requests, publishes commands to JetStream, answers reads from read models."""
