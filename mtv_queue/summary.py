"""OUT/summary.csv: what became of every job, rewritten after each one, so a stopped batch resumes."""

from __future__ import annotations

import csv
from pathlib import Path

from mtv_core.errors import ConfigError
from mtv_core.fileio import atomic_write

SUMMARY_COLUMNS = ("job", "server", "seconds", "output", "error", "retried")


class Summary:
    """A row per job (earlier runs' rows kept), rewritten whole and atomically after every job."""

    def __init__(self, out: Path):
        self.out, self.path = out, out / "summary.csv"
        self.rows = self._read() if self.path.exists() else {}

    def _read(self) -> dict[str, dict]:
        try:
            with open(self.path, newline="", encoding="utf-8") as handle:
                return {row["job"]: row for row in csv.DictReader(handle) if row.get("job")}
        except (OSError, UnicodeDecodeError, csv.Error, KeyError) as error:
            raise ConfigError(f"{self.path}: cannot read the summary of the earlier run ({error}); move it away to "
                              "run every job again") from error

    def finished(self, job: str) -> bool:
        """Whether an earlier run finished the job: outputs, no error, and its files still there."""
        row = self.rows.get(job) or {}
        outputs = (row.get("output") or "").split(";")
        return not row.get("error") and all(outputs) and all((self.out / name).is_file() for name in outputs)

    def record(self, job: str, server: str, seconds: float, outputs: list[str], error: str, retried: str) -> None:
        self.rows[job] = {"job": job, "server": server, "seconds": f"{seconds:.1f}", "output": ";".join(outputs),
                          "error": error, "retried": retried}
        atomic_write(self.path, self._write)

    def _write(self, temp: str) -> None:
        with open(temp, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, SUMMARY_COLUMNS, extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows(self.rows.values())
