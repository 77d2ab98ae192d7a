"""A trained run as the Python API hands it out: the training layer's `Run` (evaluate, recommend) with `export`,
which needs the serving layer above it."""

from __future__ import annotations

from pathlib import Path

from oncerec.errors import OncerecError
from oncerec.logs import default_output, muted
from oncerec.serve import require_packages
from oncerec.training.session import Recommendation
from oncerec.training.session import Run as TrainedRun

__all__ = ["Recommendation", "Run"]


class Run(TrainedRun):
    """A trained model with its configuration and dataset: evaluate, recommend, export."""

    def export(
        self,
        out: str | Path,
        index: str = "flat",
        dtype: str = "float32",
        ef_search: int | None = None,
        nprobe: int | None = None,
        progress: bool = True,
    ) -> dict:
        """Writes what `oncerec serve` loads to `out` (a new or empty folder): item vectors, weights, a FAISS index
        (`flat`: exact; `hnsw`, `ivf`: approximate, `ef_search` / `nprobe` their search width); returns its
        manifest. Needs the `serve` extra."""
        require_packages()
        from oncerec.serve.export import export_run

        search = {k: v for k, v in (("ef_search", ef_search), ("nprobe", nprobe)) if v is not None}
        for key, value in search.items():
            if value < 1:
                raise OncerecError(f"--{key.replace('_', '-')} {value}: give at least 1")
        source = str(self.run_dir) if self.run_dir else ""
        with default_output() if progress else muted():  # its stages' lines are its progress
            return export_run(self, Path(out), index=index, dtype=dtype, search=search, source=source)
