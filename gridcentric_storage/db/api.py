"""Database access: plain functions returning plain dicts.

Rows never leave this module as ORM objects, so callers cannot lazy-load
across threads or RPC boundaries. Backend usage (``volume_count``,
``provisioned_capacity_gb``) is derived from the volumes table on every read
rather than stored, so it cannot drift from the truth.
"""

import contextlib
import datetime
import threading
from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from oslo_config import cfg
from oslo_db import exception as db_exc
from oslo_db.sqlalchemy import enginefacade
from oslo_db.sqlalchemy import utils as sqlalchemyutils

from gridcentric_storage.common import exception
from gridcentric_storage.db import models
from gridcentric_storage.db.records import Backend, Service, Volume

CONF = cfg.CONF

_facade = enginefacade.transaction_context()
#: The execution option writer() puts on a SQLite session's connection.
_BEGIN_IMMEDIATE = 'gc_sqlite_begin_immediate'
#: This process's SQLite writers, one at a time (see :func:`writer`); reentrant, as a
#: writer may open another inside its transaction.
_sqlite_writers = threading.RLock()
_WRITER_WAIT = 30.0
_configure_lock = threading.Lock()
_configured = False


@enginefacade.transaction_context_provider
class _DBContext:
    """Carrier for enginefacade's per-transaction state."""


def _ensure_configured() -> None:
    global _configured
    with _configure_lock:
        if not _configured:
            # thread_checkin: oslo.db's time.sleep(0) at every connection
            # checkin lets eventlet's green threads run; the services run on
            # native threads (common.concurrency), where it only hands the GIL
            # away, and on a busy host a request waits milliseconds for it back
            # at each of its queries.
            _facade.configure(connection=CONF.database.connection,
                              sqlite_fk=True, thread_checkin=False)
            _facade.append_on_engine_create(_tune_sqlite_file)
            _configured = True


def _tune_sqlite_file(engine: sa.engine.Engine) -> None:
    """A SQLite file (the all-in-one's database) in WAL mode with synchronous=NORMAL,
    its connections kept open between transactions.

    In its default rollback-journal mode every commit fsyncs the journal and
    the database; with a write-ahead log a commit appends to the log alone and
    readers do not block the writer. NORMAL syncs the log at checkpoints only:
    a power loss may lose the last commits but never corrupts the file.
    oslo.db's own ``sqlite_synchronous = False`` is OFF, which may corrupt it.

    oslo.db gives a SQLite file ``NullPool``: every transaction would open the
    file, read its schema and, being the last connection to close, checkpoint
    and delete the log; a short read cost several times what it does on a
    connection kept open. A ``QueuePool`` keeps them (as SQLAlchemy 2 does
    itself for SQLite files); the pool hands a connection to one thread at a
    time, so the sqlite3 module's same-thread check is lifted; overflow is
    unbounded, so no session waits for a connection, as with ``NullPool``.
    PostgreSQL and MySQL engines are left alone, as is an in-memory database.
    """
    url = engine.url
    if url.get_backend_name() != 'sqlite' or url.database in (None, '', ':memory:'):
        return
    cargs, cparams = engine.dialect.create_connect_args(url)
    cparams['check_same_thread'] = False
    engine.pool = sa.pool.QueuePool(
        lambda: engine.dialect.connect(*cargs, **cparams), pool_size=8, max_overflow=-1,
        # the engine's listeners (oslo.db's, the dialect's, ours) go along
        _dispatch=engine.pool.dispatch, dialect=engine.pool._dialect)

    @sa.event.listens_for(engine, 'connect')
    def _pragmas(dbapi_con: Any, con_record: Any) -> None:
        # oslo.db's own connect listener leaves the connection outside any
        # transaction, where the journal mode can change (it stays in the file).
        dbapi_con.execute('PRAGMA journal_mode=WAL')
        dbapi_con.execute('PRAGMA synchronous=NORMAL')

    @sa.event.listens_for(engine, 'before_cursor_execute', retval=True)
    def _begin_immediate(conn: Any, cursor: Any, statement: str, parameters: Any,
                         context: Any, executemany: bool) -> tuple[str, Any]:
        # oslo.db's begin listener emits a plain (deferred) BEGIN. A deferred
        # transaction that reads, then writes after another connection
        # committed, fails at once with "database is locked" (SQLite cannot
        # move its snapshot forward, and calls no busy handler); one that takes
        # the write lock at BEGIN waits its turn instead. Readers still begin
        # deferred, and in WAL mode never wait.
        if statement == 'BEGIN' and conn.get_execution_options().get(_BEGIN_IMMEDIATE):
            statement = 'BEGIN IMMEDIATE'
        return statement, parameters


def reset_engine() -> None:
    """Forget the engine so the next call uses the current [database] options."""
    global _facade, _configured
    with _configure_lock:
        _facade.dispose_pool()   # its SQLite connections, kept open, are closed now
        _facade = enginefacade.transaction_context()
        _configured = False


def get_engine() -> sa.engine.Engine:
    _ensure_configured()
    return _facade.writer.get_engine()


@contextlib.contextmanager
def writer() -> Iterator[Any]:
    sqlite = get_engine().dialect.name == 'sqlite'     # (configures the facade)
    # SQLite has one writer at a time, and a connection that finds the write
    # lock taken retries after sleeps of 1, 2, 5, 10 ... 100 ms: eight clones
    # launched at once waited up to 250 ms each for their ACTIVE write. This
    # process's writers queue on a lock instead and go the moment it is free;
    # one that waits longer than _WRITER_WAIT goes to SQLite's own retries (a
    # lock held that long is a bug to survive, not to hang on).
    queued = sqlite and _sqlite_writers.acquire(timeout=_WRITER_WAIT)
    try:
        with _facade.writer.using(_DBContext()) as session:
            if sqlite:
                # Takes SQLite's write lock at BEGIN (see _tune_sqlite_file).
                session.connection(execution_options={_BEGIN_IMMEDIATE: True})
            yield session
    finally:
        if queued:
            _sqlite_writers.release()


def reader() -> Any:
    _ensure_configured()
    return _facade.reader.using(_DBContext())


def utcnow() -> datetime.datetime:
    return models._now()


def to_dict(row: Any) -> Any:
    return {c.name: getattr(row, c.name) for c in row.__table__.columns}


# ---------------------------------------------------------------- services

def service_heartbeat(host: str, topic: str, binary: str,
                      capabilities: dict[str, Any] | None = None) -> None:
    """Mark the service up; ``capabilities`` (when given) replace the published ones."""
    with writer() as session:
        service = session.query(models.Service).filter_by(host=host, topic=topic).first()
        if service is None:
            service = models.Service(host=host, topic=topic, binary=binary)
            session.add(service)
        service.last_seen_at = utcnow()
        if capabilities is not None:
            service.capabilities = capabilities


def service_get_all(topic: str | None = None, up_only: bool = False) -> list[Service]:
    with reader() as session:
        query = session.query(models.Service)
        if topic:
            query = query.filter_by(topic=topic)
        if up_only:
            query = query.filter(models.Service.last_seen_at >= _down_cutoff())
        return [to_dict(s) for s in query.order_by(models.Service.host)]


def _down_cutoff() -> datetime.datetime:
    return utcnow() - datetime.timedelta(seconds=CONF.compute.service_down_time)


def is_fresh(timestamp: datetime.datetime | None) -> bool:
    return timestamp is not None and timestamp >= _down_cutoff()


# ---------------------------------------------------------------- backends

def _usage_subquery() -> Any:
    return (sa.select(models.Volume.backend_id.label('backend_id'),
                      sa.func.count(models.Volume.id).label('volume_count'),
                      sa.func.coalesce(sa.func.sum(models.Volume.size), 0)
                      .label('provisioned'))
            .group_by(models.Volume.backend_id).subquery())


def _backend_dict(row: Any, volume_count: int | None, provisioned: int | None) -> Any:
    backend = to_dict(row)
    backend['volume_count'] = int(volume_count or 0)
    backend['provisioned_capacity_gb'] = float(provisioned or 0)
    backend['status'] = 'up' if is_fresh(row.stats_updated_at) else 'down'
    if backend['max_over_subscription_ratio'] is None:
        reported = backend['capabilities'].get('max_over_subscription_ratio')
        backend['max_over_subscription_ratio'] = (
            float(reported) if isinstance(reported, (int, float)) else 1.0)
    return backend


def backend_create(values: dict[str, Any]) -> Backend:
    try:
        with writer() as session:
            session.add(models.Backend(**values))
    except db_exc.DBDuplicateEntry:
        raise exception.Duplicate(resource='Backend', name=values['name'])
    return backend_get(values['id'])


_BACKEND_FILTERS = ('name', 'driver', 'state', 'role', 'host', 'availability_zone')


def backend_get_all(filters: dict[str, Any] | None = None, sort_key: str = 'created_at',
                    sort_dir: str = 'asc', limit: int | None = None,
                    marker: str | None = None) -> list[Backend]:
    filters = dict(filters or {})
    usage = _usage_subquery()
    with reader() as session:
        query = (session.query(models.Backend, usage.c.volume_count, usage.c.provisioned)
                 .outerjoin(usage, usage.c.backend_id == models.Backend.id))
        for key in _BACKEND_FILTERS:
            if filters.get(key) is not None:
                query = query.filter(getattr(models.Backend, key) == filters[key])
        status = filters.get('status')
        if status == 'up':
            query = query.filter(models.Backend.stats_updated_at >= _down_cutoff())
        elif status == 'down':
            stale: Any = models.Backend.stats_updated_at < _down_cutoff()
            query = query.filter(sa.or_(models.Backend.stats_updated_at.is_(None), stale))
        marker_row = None
        if marker is not None:
            marker_row = session.query(models.Backend).filter_by(id=marker).first()
            if marker_row is None:
                raise exception.BackendNotFound(id=marker)
        query = sqlalchemyutils.paginate_query(
            query, models.Backend, limit, [sort_key, 'id'], marker=marker_row,
            sort_dirs=[sort_dir, sort_dir])
        rows = [_backend_dict(*row) for row in query]
    tags = filters.get('tag')
    if tags:
        # JSON containment differs per database; tags lists are short, so
        # filtering here keeps one code path for SQLite and PostgreSQL.
        wanted = set([tags] if isinstance(tags, str) else tags)
        rows = [row for row in rows if wanted <= set(row['tags'])]
    return rows


def backend_get(backend_id: str) -> Backend:
    usage = _usage_subquery()
    with reader() as session:
        row = (session.query(models.Backend, usage.c.volume_count, usage.c.provisioned)
               .outerjoin(usage, usage.c.backend_id == models.Backend.id)
               .filter(models.Backend.id == backend_id).first())
        if row is None:
            raise exception.BackendNotFound(id=backend_id)
        return _backend_dict(*row)


def backend_update(backend_id: str, values: dict[str, Any]) -> Backend:
    try:
        with writer() as session:
            count = (session.query(models.Backend).filter_by(id=backend_id)
                     .update(values, synchronize_session=False))
    except db_exc.DBDuplicateEntry:
        raise exception.Duplicate(resource='Backend', name=values.get('name'))
    if not count:
        raise exception.BackendNotFound(id=backend_id)
    return backend_get(backend_id)


def backend_update_stats(backend_id: str, stats: dict[str, Any]) -> None:
    """Record a driver's get_volume_stats() report and mark the backend fresh."""
    values: dict[str, Any] = {'stats_updated_at': utcnow(), 'capabilities': stats}
    for key in ('total_capacity_gb', 'free_capacity_gb'):
        value = stats.get(key)
        values[key] = float(value) if isinstance(value, (int, float)) else None
    with writer() as session:
        session.query(models.Backend).filter_by(id=backend_id).update(
            values, synchronize_session=False)


def backend_destroy(backend_id: str) -> None:
    with writer() as session:
        backend = session.query(models.Backend).filter_by(id=backend_id).with_for_update().first()
        if backend is None:
            raise exception.BackendNotFound(id=backend_id)
        count = session.query(models.Volume).filter_by(backend_id=backend_id).count()
        if count:
            raise exception.BackendInUse(id=backend_id, count=count)
        session.delete(backend)


# ----------------------------------------------------------------- volumes

def volume_create(values: dict[str, Any]) -> Volume:
    return row_create(models.Volume, values)


def _volume_query(session: Any, project_id: str | None) -> Any:
    query = session.query(models.Volume)
    if project_id is not None:
        query = query.filter_by(project_id=project_id)
    return query


def volume_get(volume_id: str, project_id: str | None = None) -> Volume:
    """Return one volume; ``project_id`` None means any project (admin)."""
    return row_get(models.Volume, volume_id, exception.VolumeNotFound, project_id)


_VOLUME_FILTERS = ('name', 'status', 'backend_id', 'host', 'project_id')


def volume_get_all(project_id: str | None = None, filters: dict[str, Any] | None = None,
                   sort_key: str = 'created_at', sort_dir: str = 'asc',
                   limit: int | None = None, marker: str | None = None) -> list[Volume]:
    filters = filters or {}
    with reader() as session:
        query = _volume_query(session, project_id)
        for key in _VOLUME_FILTERS:
            if filters.get(key) is not None:
                query = query.filter(getattr(models.Volume, key) == filters[key])
        marker_row = None
        if marker is not None:
            marker_row = _volume_query(session, project_id).filter_by(id=marker).first()
            if marker_row is None:
                raise exception.VolumeNotFound(id=marker)
        query = sqlalchemyutils.paginate_query(
            query, models.Volume, limit, [sort_key, 'id'], marker=marker_row,
            sort_dirs=[sort_dir, sort_dir])
        return [to_dict(v) for v in query]


def volume_update(volume_id: str, values: dict[str, Any],
                  expected_status: tuple[str, ...] | None = None) -> Volume:
    """Update a volume; with ``expected_status`` only from one of those states.

    The status check and the write are one statement, so two requests racing
    to move the same volume cannot both win.
    """
    return row_update(models.Volume, volume_id, values, exception.VolumeNotFound,
                      expected_status)


def volume_destroy(volume_id: str) -> None:
    row_destroy(models.Volume, volume_id)


def volume_get_all_by_host(host: str, statuses: tuple[str, ...]) -> list[Volume]:
    with reader() as session:
        query = (session.query(models.Volume).filter_by(host=host)
                 .filter(models.Volume.status.in_(statuses)))
        return [to_dict(v) for v in query]


def volume_migration_targets(volume_id: str) -> list[Volume]:
    """The temporary destination rows of migrations of ``volume_id``."""
    with reader() as session:
        query = session.query(models.Volume).filter_by(
            migration_status='target:%s' % volume_id)
        return [to_dict(v) for v in query]


def volume_migration_swap(volume_id: str, volume_values: dict[str, Any],
                          expected_status: str, target_id: str,
                          target_values: dict[str, Any]) -> Volume:
    """Write both rows of a finished migration in one transaction (the switch).

    Nothing is written unless the volume is still ``expected_status``, so a
    crash leaves either both rows as they were or both switched.
    """
    with writer() as session:
        updated = (session.query(models.Volume)
                   .filter_by(id=volume_id, status=expected_status)
                   .update(volume_values, synchronize_session=False))
        if not updated:
            current = session.query(models.Volume).filter_by(id=volume_id).first()
            if current is None:
                raise exception.VolumeNotFound(id=volume_id)
            raise exception.InvalidState(resource='Volume', id=volume_id,
                                         state=current.status,
                                         reason='the migration expected %s' % expected_status)
        (session.query(models.Volume).filter_by(id=target_id)
         .update(target_values, synchronize_session=False))
    return volume_get(volume_id)


# ------------------------------------------------ shared by the resource modules

def row_create(model: Any, values: dict[str, Any]) -> Any:
    with writer() as session:
        row = model(**values)
        session.add(row)
        session.flush()
        return to_dict(row)


def row_get(model: Any, row_id: str, not_found: type[exception.NotFound],
            project_id: str | None = None) -> Any:
    """One row by id (within ``project_id`` when given) or ``not_found(id=...)``."""
    with reader() as session:
        query = session.query(model).filter_by(id=row_id)
        if project_id is not None:
            query = query.filter_by(project_id=project_id)
        row = query.first()
        if row is None:
            raise not_found(id=row_id)
        return to_dict(row)


def row_get_all(model: Any, filters: dict[str, Any], statuses: tuple[str, ...] | None = None
                ) -> Any:
    """Rows matching every non-None filter, oldest first."""
    with reader() as session:
        query = session.query(model)
        for key, value in filters.items():
            if value is not None:
                query = query.filter(getattr(model, key) == value)
        if statuses is not None:
            query = query.filter(model.status.in_(statuses))
        return [to_dict(r) for r in query.order_by(model.created_at, model.id)]


def row_count(model: Any, filters: dict[str, Any]) -> int:
    """How many rows match every non-None filter (one COUNT; no row is loaded)."""
    with reader() as session:
        query = session.query(sa.func.count(model.id))
        for key, value in filters.items():
            if value is not None:
                query = query.filter(getattr(model, key) == value)
        return int(query.scalar() or 0)


def row_count_by(model: Any, column: str) -> dict[Any, int]:
    """How many rows hold each value of ``column`` (one GROUP BY)."""
    with reader() as session:
        key = getattr(model, column)
        return {value: int(count) for value, count
                in session.query(key, sa.func.count(model.id)).group_by(key)}


def row_update(model: Any, row_id: str, values: dict[str, Any],
               not_found: type[exception.NotFound],
               expected_status: tuple[str, ...] | None = None,
               match: dict[str, Any] | None = None) -> Any:
    """Update one row; with ``expected_status`` only from those states, and with
    ``match`` only while those columns hold those values (atomically)."""
    with writer() as session:
        query = session.query(model).filter_by(id=row_id, **(match or {}))
        if expected_status is not None:
            query = query.filter(model.status.in_(expected_status))
        if not query.update(values, synchronize_session=False):
            current = session.query(model).filter_by(id=row_id).first()
            if current is None:
                raise not_found(id=row_id)
            unmet = ['%s is %s' % (key, getattr(current, key))
                     for key, value in (match or {}).items() if getattr(current, key) != value]
            if expected_status is not None and current.status not in expected_status:
                unmet.append('expected one of %s' % ', '.join(expected_status))
            raise exception.InvalidState(resource=model.__name__, id=row_id,
                                         state=current.status, reason='; '.join(unmet))
    return row_get(model, row_id, not_found)


def row_move(model: Any, row_id: str, values: dict[str, Any],
             allowed: dict[str, tuple[Any, ...]],
             not_found: type[exception.NotFound]) -> Any:
    """One UPDATE of the row while each column of ``allowed`` holds one of its
    values (None: NULL): None when it moved, else the row as it was (unchanged)."""
    with writer() as session:
        query = session.query(model).filter_by(id=row_id)
        for key, accepted in allowed.items():
            column = getattr(model, key)
            held = [value for value in accepted if value is not None]
            test = column.in_(held) if held else sa.false()
            query = query.filter(sa.or_(test, column.is_(None)) if None in accepted else test)
        if query.update(values, synchronize_session=False):
            return None
        current = session.query(model).filter_by(id=row_id).first()
        if current is None:
            raise not_found(id=row_id)
        return to_dict(current)


def row_destroy(model: Any, row_id: str) -> None:
    with writer() as session:
        session.query(model).filter_by(id=row_id).delete(synchronize_session=False)
