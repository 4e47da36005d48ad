"""Adapters: the only modules that import the SDKs (minio, mlflow, redis, celery)."""
