"""Three small fixes applied to FerretDB v1.24.2's source before we build it.

Without them its SQLite backend scans the whole collection for every update (upserts ran at
~150 documents/s on a 200-document collection and ~2-16/s on a 10,000-document one here)
and hangs on an update command of 100+ statements that hit existing documents:

1. **The ``_id`` index is never used.** The unique index is built on
   ``_ferretdb_sjson->"_id"``, but queries, UPDATE and DELETE filter on
   ``_ferretdb_sjson->'$._id'``: a different expression, so SQLite's planner falls back to a
   full table ``SCAN`` every time (``EXPLAIN QUERY PLAN`` shows it). The fix makes them use
   the index's own expression (same value, existing data files keep working).
2. **Only a filter that is exactly ``{_id: <string|ObjectID>}`` is pushed down**; anything
   else (``{_id: k, version: {$lte: v}}``, ``{_id: {$in: [...]}}``) reads and decodes every
   document in Go. The fix pushes the ``_id`` condition of any filter down (equality or an
   ``$in`` list of strings/ObjectIDs); the handler still applies the whole filter to the rows
   returned, so a partial pushdown cannot change results.
3. **An update command keeps every statement's result set open until the command ends**
   (``defer`` inside the loop), each holding one of the 100 pooled SQLite connections: the
   100th statement that matched a document waits forever for a connection. The fix closes
   each statement's iterator when the statement is done.

Each patch is an exact text replacement; one that does not match (another FerretDB version)
stops the build with a StackError instead of building something untested.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from headrace.errors import StackError

__all__ = ["PATCHES", "PATCH_LEVEL", "SourcePatch", "apply_patches"]

#: bump when PATCHES change, so a cached binary built with older patches is rebuilt
PATCH_LEVEL = "headrace.1"


@dataclass(frozen=True)
class SourcePatch:
    """Replace ``old`` (which must occur exactly once) with ``new`` in ``path``."""

    path: str
    old: str
    new: str
    why: str


_ID_WHERE = """
// idWhereClause (added by headrace) returns the WHERE clause for the _id condition of any
// filter: _id equal to a string or ObjectID, or _id $in a list of those. The handler applies
// the whole filter to the rows returned, so pushing down only this part is safe.
func idWhereClause(filter *types.Document) (string, []any) {
	if filter == nil {
		return "", nil
	}

	v, _ := filter.Get("_id")
	switch v := v.(type) {
	case string, types.ObjectID:
		arg := string(must.NotFail(sjson.MarshalSingleValue(v)))
		return fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn), []any{arg}
	case *types.Document:
		in, _ := v.Get("$in")
		arr, ok := in.(*types.Array)
		if v.Len() != 1 || !ok || arr.Len() == 0 || arr.Len() > 1000 {
			return "", nil
		}

		marks := make([]string, arr.Len())
		args := make([]any, arr.Len())
		for i := 0; i < arr.Len(); i++ {
			switch e := must.NotFail(arr.Get(i)).(type) {
			case string, types.ObjectID:
				marks[i] = "?"
				args[i] = string(must.NotFail(sjson.MarshalSingleValue(e)))
			default:
				return "", nil
			}
		}

		return fmt.Sprintf(` WHERE %s IN (%s)`, metadata.IDColumn, strings.Join(marks, ", ")), args
	}

	return "", nil
}
"""

PATCHES: tuple[SourcePatch, ...] = (
    SourcePatch(
        "internal/backends/sqlite/metadata/metadata.go",
        "IDColumn = DefaultColumn + \"->'$._id'\"",
        'IDColumn = DefaultColumn + `->"_id"`',
        "filter on the expression the _id index is built on, so SQLite uses the index",
    ),
    SourcePatch(
        "internal/backends/sqlite/collection.go",
        """	if params.Filter.Len() == 1 {
		v, _ := params.Filter.Get("_id")
		switch v.(type) {
		case string, types.ObjectID:
			whereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
			args = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
		}
	}

	q += whereClause
	q += prepareOrderByClause(params.Sort)
""",
        """	whereClause, args = idWhereClause(params.Filter)

	q += whereClause
	q += prepareOrderByClause(params.Sort)
""",
        "push the _id condition of any filter down to SQLite (Query)",
    ),
    SourcePatch(
        "internal/backends/sqlite/collection.go",
        """	if params.Filter.Len() == 1 {
		v, _ := params.Filter.Get("_id")
		switch v.(type) {
		case string, types.ObjectID:
			filterPushdown = true
			whereClause = fmt.Sprintf(` WHERE %s = ?`, metadata.IDColumn)
			args = []any{string(must.NotFail(sjson.MarshalSingleValue(v)))}
		}
	}
""",
        """	whereClause, args = idWhereClause(params.Filter)
	filterPushdown = whereClause != ""
""",
        "explain shows the plan Query really uses",
    ),
    SourcePatch(
        "internal/backends/sqlite/collection.go",
        "\n// check interfaces\n",
        _ID_WHERE + "\n// check interfaces\n",
        "the shared _id pushdown helper",
    ),
    SourcePatch(
        "internal/handler/msg_update.go",
        """		closer := iterator.NewMultiCloser()
		defer closer.Close()

		closer.Add(res.Iter)""",
        """		closer := iterator.NewMultiCloser()

		closer.Add(res.Iter)""",
        "do not keep each statement's result set open until the command ends",
    ),
    SourcePatch(
        "internal/handler/msg_update.go",
        """		result, err := common.UpdateDocument(ctx, c, "update", iter, &u)
		if err != nil {""",
        """		result, err := common.UpdateDocument(ctx, c, "update", iter, &u)
		closer.Close()
		if err != nil {""",
        "close the statement's result set (and free its connection) when it is done",
    ),
)


def apply_patches(src: Path, patches: tuple[SourcePatch, ...] = PATCHES) -> None:
    """Apply ``patches`` to the source tree at ``src``; StackError if one does not match."""
    for patch in patches:
        path = src / patch.path
        try:
            text = path.read_text()
        except OSError as exc:
            raise StackError(
                f"patching FerretDB: cannot read {patch.path} ({exc}); fix: build the version "
                "the patches were written for"
            ) from exc
        found = text.count(patch.old)
        if found != 1:
            raise StackError(
                f"patching FerretDB: {patch.path}: the text to replace ({patch.why}) occurs "
                f"{found} times, expected once; fix: build the FerretDB version the patches "
                "were written for, or update headrace_dev/stack/ferretdb_patches.py"
            )
        path.write_text(text.replace(patch.old, patch.new))
