"""A job's life: the transition table, the transitions, and all jobhub knows of
ARQ. Imports ``core`` and ``store``."""
