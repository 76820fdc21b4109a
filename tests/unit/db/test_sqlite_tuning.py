"""The all-in-one's SQLite file commits through a write-ahead log (one sync per
checkpoint, not two per commit); other databases are left as they are."""

import threading

import sqlalchemy as sa

from gridcentric_storage.db import api as db


def test_a_sqlite_file_is_in_wal_mode_with_normal_sync(gc_db):
    with db.get_engine().connect() as conn:
        assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
        # 1 is NORMAL (2 FULL, SQLite's default)
        assert conn.exec_driver_sql('PRAGMA synchronous').scalar() == 1


def test_the_database_still_reads_and_writes(gc_db):
    db.service_heartbeat('h-wal', 'gridcentric', 'gridcentric-compute', {'x': 1})
    assert [s['capabilities'] for s in db.service_get_all('gridcentric')] == [{'x': 1}]


def test_an_in_memory_database_is_left_alone(gc_conf):
    gc_conf.set_override('connection', 'sqlite://', group='database')
    db.reset_engine()
    try:
        with db.get_engine().connect() as conn:
            assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'memory'
            assert conn.exec_driver_sql('PRAGMA synchronous').scalar() == 2
    finally:
        db.reset_engine()


def test_the_mode_is_kept_in_the_file(gc_db, gc_conf):
    # What sqlite3 on the file says once the service has used it
    db.service_heartbeat('h-wal', 'gridcentric', 'gridcentric-compute')
    plain = sa.create_engine(gc_conf.database.connection)
    try:
        with plain.connect() as conn:
            assert conn.exec_driver_sql('PRAGMA journal_mode').scalar() == 'wal'
    finally:
        plain.dispose()


def test_threads_share_the_kept_connections(gc_db):
    # The pool hands a connection made in one thread to another (each API request
    # and RPC message runs in a thread of its own): every call must work there.
    errors: list[BaseException] = []

    def work(index: int) -> None:
        try:
            for n in range(20):
                db.service_heartbeat('h-%d' % index, 'gridcentric', 'gridcentric-compute',
                                     {'n': n})
                db.service_get_all('gridcentric')
        except BaseException as e:  # noqa: BLE001 (reported below)
            errors.append(e)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert {s['host']: s['capabilities'] for s in db.service_get_all('gridcentric')} == {
        'h-%d' % i: {'n': 19} for i in range(4)}


def test_a_write_waits_for_another_threads_open_transaction(gc_db):
    # While one writer's transaction is open, another thread's write waits (on
    # the process's writer lock) and lands after it, without an error.
    inside, release = threading.Event(), threading.Event()
    order: list[str] = []

    def first() -> None:
        with db.writer():
            inside.set()
            release.wait(10)
            order.append('first')

    def second() -> None:
        db.service_heartbeat('h-second', 'gridcentric', 'gridcentric-compute')
        order.append('second')

    holder = threading.Thread(target=first)
    holder.start()
    inside.wait(10)
    waiter = threading.Thread(target=second)
    waiter.start()
    waiter.join(0.2)
    assert waiter.is_alive() and order == []       # queued behind the open transaction
    release.set()
    holder.join()
    waiter.join()
    assert order == ['first', 'second']
    assert [s['host'] for s in db.service_get_all('gridcentric')] == ['h-second']


def test_a_writer_lock_held_too_long_leaves_the_wait_to_sqlite(gc_db, monkeypatch):
    # A writer stuck holding the lock (outside any transaction) must not stop the others.
    monkeypatch.setattr(db, '_WRITER_WAIT', 0.05)
    held, done = threading.Event(), threading.Event()

    def hold() -> None:
        with db._sqlite_writers:
            held.set()
            done.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    held.wait(10)
    try:
        db.service_heartbeat('h-late', 'gridcentric', 'gridcentric-compute')
    finally:
        done.set()
        thread.join()
    assert [s['host'] for s in db.service_get_all('gridcentric')] == ['h-late']
