"""The demo's worker settings, for ``jobhub dev`` where no ``worker_settings.py`` is (jobhub
installed from its wheel, an empty directory)::

    jobhub dev --worker-settings jobhub.dev.demo_worker.WorkerSettings

The workers import this module, not the web app: the settings are read here, once, as the
repository root's ``worker_settings.py`` reads them.
"""

from jobhub.core.settings import Settings
from jobhub.dev import demo
from jobhub.worker.settings import worker_settings

__all__ = ["WorkerSettings"]

WorkerSettings = worker_settings(demo.FUNCTIONS, Settings.from_env())
