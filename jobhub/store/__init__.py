"""Redis: the job store, all of its Lua, connections, coalesced reads, the worker
registry and the worker's coalesced writes. Imports only ``core``."""
