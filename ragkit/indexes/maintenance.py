"""Index maintenance, in one import: status, verification, deletes and prune, restore, merges.

The work is done by one module each: `status`, `verify`, `removal`, `restore`, `merge`.
"""

from ragkit.indexes.layout import lock_holder
from ragkit.indexes.merge import MergeResult, optimize_index
from ragkit.indexes.removal import (
    DeleteReport,
    check_target,
    delete_documents,
    ids_to_remove,
    match_documents,
    prune_candidates,
    stale_rows,
)
from ragkit.indexes.restore import RestoreReport, restore_previous
from ragkit.indexes.status import IndexStatus, index_status
from ragkit.indexes.verify import Check, VerifyReport, verify_index

__all__ = [
    "Check",
    "DeleteReport",
    "IndexStatus",
    "MergeResult",
    "RestoreReport",
    "VerifyReport",
    "check_target",
    "delete_documents",
    "ids_to_remove",
    "index_status",
    "lock_holder",
    "match_documents",
    "optimize_index",
    "prune_candidates",
    "restore_previous",
    "stale_rows",
    "verify_index",
]
