"""Live volume migration through libvirt: ``virDomainBlockCopy``, then pivot.

libvirt's block copy is QEMU's mirror (``virt/qemu_mirror.py`` says how it
works) with libvirt keeping the domain XML: once the copy is ``ready``
(``blockJobInfo``: ``cur == end``), ``blockJobAbort(..., PIVOT)`` switches the
disk to the destination and the live XML names it; any failure before that
aborts the job without a pivot, so the guest stays on its source. This is how
Nova's libvirt driver swaps a volume. The destination is the backend's
(``REUSE_EXT``: libvirt opens it, creates nothing). ``<iotune>`` belongs to
the disk, not to its source, so the disk's limits survive the pivot.

The domain outlives the compute service: a copy whose service died goes on (or
waits ``ready``) holding the destination open, so :func:`abort_leftovers`
aborts it, without a pivot, when the service starts again.
"""

import contextlib
import logging
import time
import xml.etree.ElementTree as ET
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.virt import qemu_mirror

try:
    import libvirt
except ImportError:                    # the libvirt driver does not load then
    libvirt = None

__all__ = ['abort_leftovers', 'copy']
LOG = logging.getLogger(__name__)


def _job(dom: Any, dev: str) -> dict[str, int]:
    return dict(dom.blockJobInfo(dev, 0) or {})


def _wait_ready(dom: Any, dev: str, volume_id: str, timeout: float) -> None:
    progress = qemu_mirror.default_progress(volume_id)
    started, reported, last, poll = time.monotonic(), -1, 0.0, 0.05
    while True:
        job = _job(dom, dev)
        if not job:
            raise exception.DriverError(reason='the block copy of %s ended before it was '
                                        'ready' % dev)
        end, cur = int(job.get('end') or 0), int(job.get('cur') or 0)
        ready = end > 0 and cur == end
        percent = 100 if ready else int(100 * cur / end) if end else 0
        now = time.monotonic()
        if progress is not None and percent != reported and (
                ready or now - last >= qemu_mirror.REPORT_INTERVAL):
            progress(percent)
            reported, last = percent, now
        if ready:
            return
        limit = timeout + qemu_mirror.BASE_TIMEOUT + end / qemu_mirror.MIN_RATE
        if now - started > limit:
            raise exception.DriverError(reason='the block copy of %s was not ready after '
                                        '%.0f s (%d%% copied)' % (dev, limit, percent))
        time.sleep(poll)
        poll = min(poll * 1.5, 0.25)


def _pivot(dom: Any, dev: str, timeout: float) -> None:
    """Pivot; libvirt refuses while QEMU has not reported ``ready`` yet (retried)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            dom.blockJobAbort(dev, libvirt.VIR_DOMAIN_BLOCK_JOB_ABORT_PIVOT)
            return
        except libvirt.libvirtError as e:
            if 'not ready' not in str(e) or time.monotonic() > deadline:
                raise exception.DriverError(reason='libvirt could not switch %s to the '
                                            'destination: %s' % (dev, e)) from e
            time.sleep(0.05)


def copy(dom: Any, dev: str, volume_id: str, destination: ET.Element,
         timeout: float) -> None:
    """Move the disk ``dev`` of the running domain onto ``destination`` (a ``<disk>``)."""
    xml = ET.tostring(destination, encoding='unicode')
    try:
        dom.blockCopy(dev, xml, None, libvirt.VIR_DOMAIN_BLOCK_COPY_REUSE_EXT)
    except libvirt.libvirtError as e:
        raise exception.DriverError(reason='live migration of volume %s failed; the guest '
                                    'stays on its source disk: %s' % (volume_id, e)) from e
    try:
        _wait_ready(dom, dev, volume_id, timeout)
        _pivot(dom, dev, timeout)
    except Exception as e:
        with contextlib.suppress(libvirt.libvirtError):
            dom.blockJobAbort(dev, 0)
        raise exception.DriverError(reason='live migration of volume %s failed; the guest '
                                    'stays on its source disk: %s'
                                    % (volume_id, exception.describe(e))) from e


def abort_leftovers(dom: Any, devs: dict[str, str]) -> list[str]:
    """Abort (no pivot) the block jobs on the disks ``devs`` (volume id -> target
    dev) of a running domain: at start-up none is ours, so each is a copy an
    earlier run of the service left. The volumes they were moving."""
    aborted = []
    for volume_id, dev in sorted(devs.items()):
        try:
            if not _job(dom, dev):
                continue
            LOG.warning('Aborting the block copy of %s (volume %s) left by an interrupted '
                        'migration', dev, volume_id)
            dom.blockJobAbort(dev, 0)
            aborted.append(volume_id)
        except libvirt.libvirtError as e:
            LOG.warning('Could not abort the block job on %s of %s: %s', dev, dom.name(), e)
    return aborted
