"""Command handlers: load an aggregate's last event, decide, publish with the expected sequence, wait until visible."""
