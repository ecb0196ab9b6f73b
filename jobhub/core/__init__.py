"""What every layer shares: the snapshot model, errors, settings, Redis key names,
logs and metrics. Imports nothing else of jobhub."""
