"""The adapters an entry point needs, built once from settings and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property

from mlaas.adapters.jobstore import JobStore
from mlaas.adapters.monitorstore import MonitorStore
from mlaas.adapters.queue import JobQueue
from mlaas.adapters.registry import MlflowRegistry
from mlaas.adapters.rolloutstore import RolloutStore
from mlaas.adapters.storage import BlobStore, open_store
from mlaas.settings import Settings


@dataclass
class Context:
    """Settings plus adapters; each adapter is created on first use (after a worker forks)."""

    settings: Settings
    _overrides: dict[str, object] = field(default_factory=dict)

    @cached_property
    def storage(self) -> BlobStore:
        return self._overrides.get("storage") or open_store(self.settings)  # type: ignore[return-value]

    @cached_property
    def registry(self) -> MlflowRegistry:
        return self._overrides.get("registry") or MlflowRegistry(self.settings)  # type: ignore[return-value]

    @cached_property
    def jobs(self) -> JobStore:
        return self._overrides.get("jobs") or JobStore(self.settings)  # type: ignore[return-value]

    @cached_property
    def monitors(self) -> MonitorStore:
        return self._overrides.get("monitors") or MonitorStore(self.settings)  # type: ignore[return-value]

    @cached_property
    def queue(self) -> JobQueue:
        return self._overrides.get("queue") or JobQueue(self.settings)  # type: ignore[return-value]

    @cached_property
    def rollouts(self) -> RolloutStore:
        return self._overrides.get("rollouts") or RolloutStore(self.settings)  # type: ignore[return-value]
