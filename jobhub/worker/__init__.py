"""What runs in ``arq worker_settings.WorkerSettings``: the job context and
``@job``, the run wrapper, heartbeats and recovery, the worker settings. Never loads the
web stack."""
