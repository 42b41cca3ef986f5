"""The coordinator's parts, kept on `app.state.bitmatch`: settings, database, blob store, devices, scheduler
(routers reach them through the typed dependencies in server/dependencies.py)."""

from dataclasses import dataclass

from server.db import Database
from server.devices import DevicePool
from server.scheduler import Scheduler
from server.settings import Settings
from server.storage import BlobStore


@dataclass
class AppState:
    settings: Settings
    db: Database
    store: BlobStore
    pool: DevicePool
    scheduler: Scheduler

    @property
    def packages_dir(self):
        return self.settings.data_dir / "packages"
