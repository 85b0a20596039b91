"""Project paths, all derived from the project root (never from the working directory)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class DataPaths:
    """Where each stage reads and writes, relative to one root (the project or a test folder)."""

    root: Path = PROJECT_ROOT

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def drops(self) -> Path:
        """Incoming event drops and reference tables, as a producer would deliver them."""
        return self.data / "drops"

    @property
    def raw(self) -> Path:
        return self.data / "raw"

    @property
    def raw_events(self) -> Path:
        return self.raw / "events"

    @property
    def quarantine(self) -> Path:
        return self.raw / "quarantine"

    @property
    def interim(self) -> Path:
        return self.data / "interim"

    @property
    def features(self) -> Path:
        return self.data / "features"

    @property
    def metrics(self) -> Path:
        return self.root / "metrics"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def datasets(self) -> Path:
        """Vendored real data sets (with their licences)."""
        return self.root / "datasets"
