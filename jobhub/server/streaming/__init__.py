"""The push path: one pub/sub reader per process (hub), one view per
stream (watch), the SSE wire format (frames) and the stream endpoints (events)."""
