"""Artemis Lifecycle: the domain library. Never imports celery."""

__version__ = "0.1.0"
