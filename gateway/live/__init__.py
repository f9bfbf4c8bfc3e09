"""Real-time streaming: subscriptions in a JetStream KV bucket, WebSocket fan-out from the POINTS stream."""
