"""virt/qemu_migrate.py's source side against a scripted QEMU monitor: the replies a
real QEMU gives only under some timings. Real guests moving between two QEMUs:
tests/functional/virt/test_qemu_migrate.py."""

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt.qemu_migrate import MigrationMixin


class Monitor:
    """A source QEMU: ``query-migrate`` answers from ``replies`` (the last one
    repeats); the run state turns ``postmigrate`` with the first reply that
    has sent the RAM, as QEMU's does once its outgoing migration completed."""

    def __init__(self, replies: list[dict[str, Any]]) -> None:
        self.replies = replies
        self.state = 'running'
        self.commands: list[str] = []

    def cmd(self, name: str, **args: Any) -> Any:
        self.commands.append(name)
        if name == 'query-migrate':
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply.get('status') == 'completed' and 'ram' in reply:
                self.state = 'postmigrate'
            return dict(reply)
        if name == 'query-status':
            return {'status': self.state, 'running': self.state == 'running'}
        return {}


class Processes:
    def __init__(self, monitor: Monitor) -> None:
        self.mon = monitor

    @contextlib.contextmanager
    def monitor(self, instance_id: str) -> Iterator[Monitor]:
        yield self.mon


class Locks:
    def get(self, name: str) -> contextlib.nullcontext[None]:
        return contextlib.nullcontext()


class Driver(MigrationMixin):
    qmp_timeout = 5.0
    migration_timeout = 5.0

    def __init__(self, monitor: Monitor) -> None:
        self._vms = Processes(monitor)
        self._locks = Locks()


SENT = {'status': 'completed', 'total-time': 2500, 'downtime': 40,
        'ram': {'transferred': 80 << 20}}


def test_a_qemu_that_arrived_by_migration_reports_only_its_own_outgoing_move():
    # What such a QEMU answers right after 'migrate': its incoming migration's
    # "completed" (no RAM figures), until the outgoing one has connected.
    mon = Monitor([{'status': 'completed'}, {'status': 'setup'},
                   {'status': 'active', 'ram': {'transferred': 1 << 20}}, SENT])
    figures = Driver(mon).migrate_out('vm', 'tcp:127.0.0.1:4444', 5)
    assert figures == {'total_seconds': 2.5, 'downtime_ms': 40, 'transferred_mb': 80.0}
    assert mon.state == 'postmigrate' and not mon.replies[1:]


def test_a_source_still_running_has_not_sent_its_guest():
    mon = Monitor([{'status': 'completed'}])          # never connects
    with pytest.raises(exception.DriverError, match='did not end within'):
        Driver(mon).migrate_out('vm', 'tcp:127.0.0.1:4444', 0.3)
    assert 'migrate_cancel' in mon.commands and mon.state == 'running'


def test_a_failed_move_says_why():
    mon = Monitor([{'status': 'setup'}, {'status': 'failed', 'error-desc': 'Connection refused'}])
    with pytest.raises(exception.DriverError, match='failed: Connection refused'):
        Driver(mon).migrate_out('vm', 'tcp:127.0.0.1:1', 5)
