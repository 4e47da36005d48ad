"""The Python client and the ``mlaas`` command for the HTTP API."""

from mlaas.client.api import ApiError, ApiUnavailable, Client

__all__ = ["ApiError", "ApiUnavailable", "Client"]
