"""The ARQ worker: ``arq worker_settings.WorkerSettings`` from the repository root.

Add your own job functions (see ``jobhub.demo``) to the list.
"""

from jobhub import demo
from jobhub.settings import Settings
from jobhub.worker import worker_settings

WorkerSettings = worker_settings(demo.FUNCTIONS, Settings.from_env())
