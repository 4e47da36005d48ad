"""Celery worker and beat for mlaas: thin tasks that call mlaas services."""
