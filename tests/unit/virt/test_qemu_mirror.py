"""virt/qemu_mirror.py against a scripted QMP monitor: the failure paths a real QEMU
will not produce on demand (a job that fails after it started, a pivot QEMU refuses,
a source node QEMU will not let go). Real guests: tests/functional/virt/test_qemu_mirror.py.
"""

import contextlib
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.virt import base, qemu_mirror
from gridcentric_storage.virt import qemu_cmdline as cmdline

SOURCE = {'driver_volume_type': 'local',
          'data': {'device_path': '/v/one/volume-1', 'format': 'raw',
                   'qos_specs': {'total_iops_sec': 100}}}
DEST = {'driver_volume_type': 'local', 'data': {'device_path': '/v/two/volume-1',
                                                'format': 'qcow2'}}


class Monitor:
    """QEMU's block layer as far as a mirror sees it: nodes, one device, jobs."""

    def __init__(self) -> None:
        self.nodes = {'drive0'}
        self.device_node = 'drive0'
        self.jobs: dict[str, dict[str, Any]] = {}
        self.throttled: list[dict[str, Any]] = []
        self.fail_job: str | None = None          # the job concludes with this error
        self.fail_pivot: str | None = None        # job-complete concludes with this error
        self.stuck: set[str] = set()              # nodes blockdev-del refuses

    def cmd(self, name: str, **args: Any) -> Any:
        if name == 'query-block':
            return [{'qdev': '/machine/peripheral/disk0/virtio-backend',
                     'inserted': {'node-name': self.device_node}}]
        if name == 'query-named-block-nodes':
            return [{'node-name': n} for n in sorted(self.nodes)]
        if name == 'query-jobs':
            return [dict(j) for j in self.jobs.values()]
        if name == 'blockdev-add':
            self.nodes.add(args['node-name'])
        elif name == 'blockdev-mirror':
            job = {'id': args['job-id'], 'status': 'ready', 'current-progress': 8,
                   'total-progress': 8, 'target': args['target']}
            if self.fail_job:
                job.update(status='concluded', error=self.fail_job)
            self.jobs[args['job-id']] = job
        elif name == 'job-complete':
            job = self.jobs[args['id']]
            job['status'] = 'concluded'
            if self.fail_pivot:
                job['error'] = self.fail_pivot
            else:
                self.device_node = job['target']
        elif name == 'block-job-cancel':
            self.jobs[args['device']]['status'] = 'concluded'
        elif name == 'job-dismiss':
            del self.jobs[args['id']]
        elif name == 'blockdev-del':
            node = args['node-name']
            if node in self.stuck or node == self.device_node:
                raise exception.QmpError(reason='QMP blockdev-del failed: Node %s is busy'
                                         % node)
            self.nodes.discard(node)
        elif name == 'block_set_io_throttle':
            self.throttled.append(args)
        return {}


def layout() -> cmdline.Layout:
    return cmdline.Layout(id='vm', name='vm', memory_mb=64, vcpus=1, accel='tcg',
                          disks=[cmdline.DiskSlot('vol-1', 0, 4, dict(SOURCE))])


def migrate(mon: Monitor, vm: cmdline.Layout) -> None:
    qemu_mirror.migrate(lambda: contextlib.nullcontext(mon), vm, 'vol-1',   # type: ignore
                        base.Disk('vol-1', DEST), 5.0, progress=lambda percent: None)


def test_the_device_ends_on_the_destination_with_its_limits() -> None:
    mon, vm = Monitor(), layout()
    migrate(mon, vm)
    assert mon.device_node.startswith('drive0-m') and mon.nodes == {mon.device_node}
    assert mon.jobs == {}
    assert vm.disks[0].connection_info['data']['device_path'] == '/v/two/volume-1'
    assert vm.disks[0].connection_info['data']['qos_specs'] == {'total_iops_sec': 100}
    assert mon.throttled[-1]['iops'] == 100


@pytest.mark.parametrize('failure', ['job', 'pivot'])
def test_a_failed_job_or_pivot_leaves_the_device_on_its_source(failure: str) -> None:
    mon, vm = Monitor(), layout()
    if failure == 'job':
        mon.fail_job = 'Input/output error'
    else:
        mon.fail_pivot = 'Operation not permitted'
    with pytest.raises(exception.DriverError) as failed:
        migrate(mon, vm)
    assert ('Input/output error' if failure == 'job' else 'Operation not permitted') in \
        failed.value.message
    assert (mon.device_node, mon.nodes, mon.jobs) == ('drive0', {'drive0'}, {})
    assert vm.disks[0].connection_info == SOURCE


def test_a_source_qemu_keeps_does_not_undo_a_done_pivot() -> None:
    mon, vm = Monitor(), layout()
    mon.stuck.add('drive0')
    migrate(mon, vm)                            # logged, not raised: the guest moved
    assert mon.device_node.startswith('drive0-m')
    assert vm.disks[0].connection_info['data']['device_path'] == '/v/two/volume-1'


def test_a_volume_not_attached_is_refused() -> None:
    with pytest.raises(exception.DriverError):
        qemu_mirror.migrate(lambda: contextlib.nullcontext(Monitor()),  # type: ignore
                            layout(), 'vol-2', base.Disk('vol-2', DEST), 5.0)
