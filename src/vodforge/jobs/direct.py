"""The job store's hot path on the DBAPI connection: SQLAlchemy Core statements compiled once
per dialect and run on the driver's cursor with SQLAlchemy's own type processors.

Every step of every job starts and finishes through a handful of statements. Through a
``Session`` each execution costs ~0.15-0.3 ms of Python on top of the database's own work
(execution context, result metadata, events, the session's transaction bookkeeping); on the
cursor it costs what the driver does. The statements stay SQLAlchemy Core (``store.py`` builds
them, the same text on SQLite and PostgreSQL); this module only skips the per-execution layer:

- ``Prepared``: a statement compiled for one dialect (and, for an INSERT, one set of columns):
  its SQL text, the order of its parameters, the bind processor of each parameter and the
  result processor of each returned column, all taken from the statement's types through
  their dialect implementation (``type.dialect_impl(dialect)``), as SQLAlchemy's execution does.
- ``DirectTx``: one transaction on a pooled DBAPI connection — ``BEGIN IMMEDIATE`` on SQLite
  for writes, as the engine's ``begin`` listener does — committed on success and rolled back on
  any exception. Driver errors are wrapped as SQLAlchemy's ``DBAPIError`` subclasses (with
  disconnects flagged), so the store's one error boundary maps them as before.

What it does not do, by design: Python-side column defaults (a statement whose compilation
would need them is refused when it is prepared: the hot path passes every value), expanding
``IN`` parameters, and ORM objects. Rows come back as named tuples.
"""

from __future__ import annotations

import threading
from collections import namedtuple
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast

from sqlalchemy import Engine
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError
from sqlalchemy.sql import Insert
from sqlalchemy.sql.compiler import SQLCompiler
from sqlalchemy.sql.elements import ClauseElement

__all__ = ["DirectResult", "DirectStatements", "DirectTx", "Prepared"]

_Processor = Callable[[Any], Any] | None


class Prepared:
    """One statement compiled for one dialect (and, for an INSERT, one set of columns)."""

    __slots__ = ("_binds", "_columns", "_dialect", "_names", "_results", "_row", "compiled", "sql")

    def __init__(
        self, stmt: ClauseElement, dialect: Dialect, column_keys: Sequence[str] | None = None
    ) -> None:
        compiled = stmt.compile(dialect=dialect, column_keys=list(column_keys or ()) or None)
        if not isinstance(compiled, SQLCompiler):
            raise TypeError(f"not a SQL statement: {stmt!r}")
        if compiled.insert_prefetch or compiled.update_prefetch:
            missing = [c.key for c in (*compiled.insert_prefetch, *compiled.update_prefetch)]
            raise ValueError(
                f"the direct path does not apply Python-side defaults; pass {missing} explicitly"
            )
        if any(bind.expanding for bind in compiled.binds.values()):
            raise ValueError("the direct path does not expand IN parameters")
        if any(bind.literal_execute for bind in compiled.binds.values()):
            raise ValueError("the direct path does not render literal-execute parameters")
        self.compiled = compiled
        self.sql = compiled.string
        #: Parameter names in placeholder order (positional drivers) or None (named drivers).
        self._names: tuple[str, ...] | None = (
            tuple(compiled.positiontup or ()) if compiled.positional else None
        )
        self._binds: dict[str, _Processor] = {
            name: bind.type.dialect_impl(dialect).bind_processor(dialect)
            for bind, name in compiled.bind_names.items()
        }
        # A SELECT's columns, or an INSERT/UPDATE/DELETE's RETURNING columns (none without).
        columns = list(getattr(stmt, "exported_columns", ()))
        # Result processors need the driver's type codes (PostgreSQL's numerics do): they are
        # taken from the first execution's cursor.description.
        self._columns = columns
        self._dialect = dialect
        self._results: tuple[_Processor, ...] | None = None
        keys = [str(getattr(c, "key", None) or f"c{i}") for i, c in enumerate(columns)]
        self._row: Any = namedtuple("Row", keys, rename=True) if keys else None

    def parameters(self, params: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for ``params``: every bind filled in (literal values of the
        statement included) and converted by its type's bind processor."""
        values = self.compiled.construct_params(dict(params))
        converted = {}
        for name, value in values.items():
            processor = self._binds.get(name)
            # Called on None too, as SQLAlchemy does (JSON stores None as 'null').
            converted[name] = value if processor is None else processor(value)
        if self._names is None:
            return converted
        return tuple(converted[name] for name in self._names)

    def rows(self, raw: Sequence[Sequence[Any]], description: Sequence[Sequence[Any]]) -> list[Any]:
        if self._row is None:
            return []
        processors = self._results
        if processors is None:
            processors = self._results = tuple(
                column.type.dialect_impl(self._dialect).result_processor(self._dialect, d[1])
                for column, d in zip(self._columns, description, strict=True)
            )
        make = self._row._make
        out = []
        for record in raw:
            out.append(
                make(p(v) if p is not None else v for p, v in zip(processors, record, strict=True))
            )
        return out

    @property
    def returns_rows(self) -> bool:
        return self._row is not None


class DirectResult:
    """What a statement gave back: its rows (already fetched) and the rows it changed."""

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[Any], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def all(self) -> list[Any]:
        return list(self._rows)

    def first(self) -> Any | None:
        return self._rows[0] if self._rows else None

    def one_or_none(self) -> Any | None:
        if len(self._rows) > 1:
            raise ValueError(f"expected at most one row, got {len(self._rows)}")
        return self.first()

    def one(self) -> Any:
        if len(self._rows) != 1:
            raise ValueError(f"expected one row, got {len(self._rows)}")
        return self._rows[0]

    def scalar_one(self) -> Any:
        return self.one()[0]

    def scalars(self) -> list[Any]:
        return [row[0] for row in self._rows]


class DirectStatements:
    """The prepared statements of one engine, compiled on first use (thread-safe)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.dialect = engine.dialect
        self._prepared: dict[tuple[int, tuple[str, ...]], tuple[ClauseElement, Prepared]] = {}
        self._lock = threading.Lock()

    def prepared(self, stmt: ClauseElement, column_keys: Sequence[str] = ()) -> Prepared:
        keys = tuple(sorted(column_keys)) if isinstance(stmt, Insert) else ()
        entry = self._prepared.get((id(stmt), keys))
        if entry is None:
            with self._lock:
                entry = self._prepared.get((id(stmt), keys))
                if entry is None:
                    # Kept with its compilation, so the statement's id is never reused.
                    entry = (stmt, Prepared(stmt, self.dialect, keys))
                    self._prepared[(id(stmt), keys)] = entry
        return entry[1]

    @contextmanager
    def transaction(self, *, write: bool) -> Iterator[DirectTx]:
        """One transaction on a pooled connection: committed on success, rolled back on any
        exception; driver errors come out as SQLAlchemy's ``DBAPIError`` subclasses."""
        dialect = self.dialect
        dbapi_error = dialect.loaded_dbapi.Error
        raw = self.engine.raw_connection()
        try:
            cursor = raw.cursor()
            tx = DirectTx(self, cursor, raw)
            try:
                if dialect.name == "sqlite":
                    tx.run_sql("BEGIN IMMEDIATE" if write else "BEGIN")
                yield tx
                try:
                    raw.commit()
                except dbapi_error as exc:
                    raise tx.wrap("COMMIT", {}, exc) from exc
            except BaseException:
                # A connection found dead (invalidated by ``wrap``) has nothing to roll back.
                if raw.is_valid:
                    try:
                        raw.rollback()
                    except dbapi_error:
                        raw.invalidate()
                raise
            finally:
                cursor.close()
        finally:
            raw.close()


class DirectTx:
    """Statements of one transaction: ``execute``/``scalar``/``scalars`` like a Session's."""

    __slots__ = ("_cursor", "_raw", "_statements")

    def __init__(self, statements: DirectStatements, cursor: Any, raw: Any) -> None:
        self._statements = statements
        self._cursor = cursor
        self._raw = raw

    def execute(
        self, stmt: ClauseElement, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] = ()
    ) -> DirectResult:
        if isinstance(params, Mapping) or not params:
            single: Mapping[str, Any] = params if isinstance(params, Mapping) else {}
            prepared = self._statements.prepared(stmt, tuple(single))
            driver = prepared.parameters(single)
            self._run(prepared.sql, driver, many=False)
            rows = (
                prepared.rows(self._cursor.fetchall(), self._cursor.description)
                if prepared.returns_rows
                else []
            )
            return DirectResult(rows, self._cursor.rowcount)
        many = list(params)
        prepared = self._statements.prepared(stmt, tuple(many[0]))
        if prepared.returns_rows:
            raise ValueError("executemany with RETURNING is not on the direct path")
        self._run(prepared.sql, [prepared.parameters(p) for p in many], many=True)
        return DirectResult([], self._cursor.rowcount)

    def scalar(self, stmt: ClauseElement, params: Mapping[str, Any] | None = None) -> Any:
        row = self.execute(stmt, params or {}).first()
        return None if row is None else row[0]

    def scalars(self, stmt: ClauseElement, params: Mapping[str, Any] | None = None) -> list[Any]:
        return self.execute(stmt, params or {}).scalars()

    def run_sql(self, sql: str) -> None:
        self._run(sql, (), many=False)

    def wrap(self, sql: str, params: Any, exc: Exception) -> DBAPIError:
        dialect = self._statements.dialect
        disconnect = dialect.is_disconnect(cast(Any, exc), self._raw, self._cursor)
        if disconnect:
            self._raw.invalidate(exc)
        wrapped = DBAPIError.instance(
            sql,
            params,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=disconnect,
            dialect=dialect,
        )
        return cast(DBAPIError, wrapped)

    def _run(self, sql: str, params: Any, *, many: bool) -> None:
        try:
            if many:
                self._cursor.executemany(sql, params)
            else:
                self._cursor.execute(sql, params)
        except self._statements.dialect.loaded_dbapi.Error as exc:
            raise self.wrap(sql, params, exc) from exc
