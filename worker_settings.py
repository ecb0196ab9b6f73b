"""The ARQ worker: ``arq worker_settings.WorkerSettings`` from the repository root.

Add your own job functions (see ``jobhub.dev.demo``) to the list.
"""

from jobhub import Settings, worker_settings
from jobhub.dev import demo

WorkerSettings = worker_settings(demo.FUNCTIONS, Settings.from_env())
