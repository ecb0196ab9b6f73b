"""The HTTP client, the CLI and its terminal screen. Imports only ``core``."""
