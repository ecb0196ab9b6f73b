"""The push path: one pub/sub reader per process (hub, over its connection: pubsub), one
view per stream (watch), the SSE wire format (frames) and the stream endpoints (events)."""
