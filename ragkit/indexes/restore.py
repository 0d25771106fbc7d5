"""`ragkit restore`: make the previous intact generation current again (after damage)."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field

from ragkit.indexes.layout import (
    IndexStoreError,
    damaged_files,
    publish,
    remove_stale_generations,
    require_current,
    restorable_generation,
    writer_lock,
)


class RestoreReport(BaseModel):
    restored_generation: int = Field(description="the generation that is current now")
    replaced_generation: int = Field(description="the generation that was current before (removed)")
    problems: list[str] = Field(default_factory=list, description="why the replaced generation was damaged")


def restore_previous(index_dir: str | Path, force: bool = False) -> RestoreReport:
    """Make the newest intact older generation current again (under the writer lock).

    Meant for a damaged current generation (its checksums fail); with `force` an intact one is
    rolled back too. The replaced generation is removed; documents ingested since the restored
    generation are gone from the index, and the next ingest adds them again.
    """
    index_dir = Path(index_dir)
    with writer_lock(index_dir):
        current = require_current(index_dir)
        problems = damaged_files(index_dir, current)
        if not problems and not force:
            raise IndexStoreError(
                f"generation {current.generation} of {index_dir} is intact (its checksums match): "
                "nothing to restore; use --force to roll back to the previous generation anyway"
            )
        previous = restorable_generation(index_dir, current)
        if previous is None:
            raise IndexStoreError(
                f"no intact generation older than {current.generation} is kept in {index_dir}: "
                "re-ingest into a new --index directory"
            )
        publish(index_dir, previous)
        remove_stale_generations(index_dir, previous)
    return RestoreReport(
        restored_generation=previous.generation, replaced_generation=current.generation, problems=problems
    )
