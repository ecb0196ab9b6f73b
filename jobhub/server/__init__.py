"""The Starlette app: routes, auth, sessions, the console's API, and ``streaming``."""
