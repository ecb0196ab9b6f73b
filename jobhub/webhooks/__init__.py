"""Signed webhooks, delivered by the workers when a job ends."""
