"""The console at /ui: server-rendered pages over the same services and scopes as the JSON API."""

from mlaas.api.ui.views import bp

__all__ = ["bp"]
