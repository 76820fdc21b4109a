"""The QEMU driver's warm pool: QEMU processes started ahead for each live image.

Why: most of a clone's launch is QEMU starting (exec, libraries, accelerator,
mapping the live image's RAM), not loading its device state. So for every
live image of this host the pool keeps ``size`` processes that have done all
of that and wait, and a launch claims one (:meth:`WarmPool.claim`) instead of
starting one; the pool then starts a replacement in the background. A launch
never waits for the pool: with none ready it starts QEMU itself, as without
a pool.

What a pooled process cannot know before its clone is claimed decides how it
waits: QEMU 7.2 reads ``-fw_cfg`` files only when it builds the machine and
has no command to change them after, so the process waits in
``--preconfig`` (before the machine exists) and the claim writes the clone's
guest files, adds its disks' nodes, then lets QEMU build the machine; the
NIC comes by ``device_add`` with the clone's MAC (``qemu_pool_slots.py``
starts and claims the processes, with the claim's QMP commands in one batch).
A vmgenid device's ``guid`` cannot be set once the machine is built, so a
warm clone gets its slot's own fresh generation id (:func:`slot_vmgenid`),
and a clone that asks for a given one starts cold. Cost: each waiting
process has mapped the live image's RAM (copy-on-write, untouched) and holds
only QEMU's own memory, about 12 MB PSS under TCG.

This module is also the bookkeeping (which slots exist, for which live image,
which are being started, refilled, drained); the driver says how a slot's
process is started, checked and killed (callbacks), so the bookkeeping runs
in unit tests without QEMU. A slot is a directory ``<instances_path>/<slot
id>`` holding :data:`MARKER` until a clone claims it and renames it to its
own id; a directory that still holds the marker when the service starts is
a leftover of a previous run (:func:`unclaimed`).
"""

import atexit
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable

from gridcentric_storage.virt import base
from gridcentric_storage.virt import qemu_live as live
from gridcentric_storage.virt.qemu_process import check_id

LOG = logging.getLogger(__name__)

__all__ = ['GUEST_FILES', 'MARKER', 'WarmPool', 'live_image_ids',
           'local_artifacts', 'new_slot_id', 'slot_guest_files', 'slot_vmgenid', 'unclaimed']

#: In an unclaimed slot's directory: the id of the live image it waits for.
MARKER = 'pool-slot'
#: Seconds before the pool tries again to start a process for a live image whose
#: last start failed (a broken image must not make the pool spin).
RETRY_SECONDS = 30.0
#: Seconds without a claim before the pool starts replacements: starting QEMU
#: takes CPU that launches under way (a burst of clones) need more.
QUIET_SECONDS = 0.5


#: fw_cfg name -> file name of every guest file a pooled process is started with.
#: Its command line must name them all before the clone is known, so a warm
#: clone without guest parameters or user data gets these files empty (the API
#: does not tell empty user data from none either).
GUEST_FILES = live.GUEST_FILE_NAMES


def new_slot_id() -> str:
    return 'pool-' + uuid.uuid4().hex


def slot_vmgenid(slot_id: str) -> str:
    """The generation id a slot's QEMU is started with (QEMU 7.2 cannot change a
    vmgenid device's guid once the machine is built): the uuid of its id."""
    return str(uuid.UUID(slot_id.removeprefix('pool-')))


def unclaimed(instances_path: str) -> list[str]:
    """Ids of the unclaimed slots in ``instances_path`` (at start: a previous run's)."""
    try:
        names = os.listdir(instances_path)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if os.path.isfile(os.path.join(instances_path, n, MARKER)))


def live_image_ids(live_images_path: str) -> list[str]:
    """Live images in ``live_images_path``, complete (not being blessed)."""
    try:
        names = os.listdir(live_images_path)
    except FileNotFoundError:
        return []
    return sorted(n for n in names if not n.endswith('.blessing')
                  and os.path.isfile(os.path.join(live_images_path, n, 'layout.json')))


def local_artifacts(live_images_path: str, live_image_id: str) -> base.LiveImageArtifacts:
    """The files of a live image of ``live_images_path`` (what a pooled process maps)."""
    directory = os.path.join(live_images_path, check_id('live image', live_image_id))
    return base.LiveImageArtifacts(
        live_image_id=live_image_id, directory=directory,
        memory_path=os.path.join(directory, 'ram'),
        state_path=os.path.join(directory, 'state'), memory_mb=0, vcpus=0)


def slot_guest_files(directory: str) -> dict[str, str]:
    """The slot's guest files (fw_cfg name -> path), created empty: the claim
    writes the clone's before QEMU reads them (``x-exit-preconfig``)."""
    return live.write_guest_files(directory, dict.fromkeys(GUEST_FILES, b''))


class WarmPool:
    """Up to ``size`` ready processes per live image.

    ``images()`` lists the live images to keep warm; ``prestart(slot_id,
    live_image_id)`` starts a slot's process (raising when it cannot);
    ``alive(slot_id)`` says whether it still runs; ``kill(slot_id)`` stops it
    and removes its directory (idempotent). ``interval``: seconds between two
    looks at ``images()`` when nothing wakes the refill thread earlier;
    ``quiet``: seconds without a claim before a replacement is started.
    """

    def __init__(self, size: int, images: Callable[[], list[str]],
                 prestart: Callable[[str, str], None], alive: Callable[[str], bool],
                 kill: Callable[[str], None], interval: float = 1.0,
                 quiet: float = QUIET_SECONDS) -> None:
        self.size = size
        self._images = images
        self._prestart = prestart
        self._alive = alive
        self._kill = kill
        self.interval = interval
        self.quiet = quiet
        self._ready: dict[str, list[str]] = {}      # live image -> slot ids, oldest first
        self._starting: dict[str, str] = {}         # slot id -> live image
        self._drained: set[str] = set()
        self._retry_at: dict[str, float] = {}
        self._last_claim = 0.0
        self._cond = threading.Condition()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- what launch and discard call

    def claim(self, live_image_id: str) -> str | None:
        """A ready slot of ``live_image_id`` (now the caller's), or None. Slots
        whose process died are dropped on the way."""
        while True:
            with self._cond:
                self._last_claim = time.monotonic()
                slots = self._ready.get(live_image_id) or []
                if not slots:
                    self._wake.set()
                    return None
                slot_id = slots.pop(0)
            self._wake.set()                         # start its replacement
            if self._alive(slot_id):
                return slot_id
            LOG.warning('Pooled QEMU %s of live image %s died; dropped', slot_id,
                        live_image_id)
            self._kill(slot_id)

    def drain(self, live_image_id: str) -> None:
        """Kill every slot of ``live_image_id`` and start no more (before its files go);
        waits for a start of one under way."""
        with self._cond:
            self._drained.add(live_image_id)
            while live_image_id in self._starting.values():
                self._cond.wait()
            slots = self._ready.pop(live_image_id, [])
        for slot_id in slots:
            self._kill(slot_id)

    def ready(self, live_image_id: str) -> int:
        """How many slots of ``live_image_id`` are ready to claim."""
        with self._cond:
            return len(self._ready.get(live_image_id) or [])

    # ---- refill

    def refill_once(self) -> int:
        """Start the processes missing (one at a time); how many were started."""
        started = 0
        wanted = list(self._images())
        with self._cond:
            self._drained &= set(wanted)             # a discarded image is forgotten
        for live_image_id in wanted:
            while not self._stop.is_set():
                with self._cond:
                    if (live_image_id in self._drained
                            or self._retry_at.get(live_image_id, 0) > time.monotonic()
                            or len(self._ready.get(live_image_id) or [])
                            + sum(1 for i in self._starting.values() if i == live_image_id)
                            >= self.size):
                        break
                    slot_id = new_slot_id()
                    self._starting[slot_id] = live_image_id
                ok = False
                self._quiet()
                try:
                    self._prestart(slot_id, live_image_id)
                    ok = True
                except Exception:
                    LOG.warning('Could not start a pooled QEMU for live image %s; retrying '
                                'in %.0f s', live_image_id, RETRY_SECONDS, exc_info=True)
                with self._cond:
                    keep = ok and live_image_id not in self._drained \
                        and not self._stop.is_set()
                    if keep:
                        del self._starting[slot_id]
                        self._ready.setdefault(live_image_id, []).append(slot_id)
                        self._cond.notify_all()
                if not keep:
                    # Failed, drained or stopped meanwhile: gone before drain() returns
                    self._kill(slot_id)
                    with self._cond:
                        del self._starting[slot_id]
                        if not ok:
                            self._retry_at[live_image_id] = time.monotonic() + RETRY_SECONDS
                        self._cond.notify_all()
                    break
                started += 1
        return started

    def _quiet(self) -> None:
        """Wait until no claim came for ``quiet`` seconds (or the pool stops)."""
        while not self._stop.is_set():
            with self._cond:
                left = self._last_claim + self.quiet - time.monotonic()
            if left <= 0:
                return
            self._stop.wait(left)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refill_once()
            except Exception:
                LOG.exception('Warm pool refill failed; will retry')
            self._wake.wait(self.interval)
            self._wake.clear()

    def start(self) -> None:
        if self.size <= 0 or self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name='gc-qemu-warm-pool',
                                        daemon=True)
        self._thread.start()
        atexit.register(self.stop)       # the service stops: its pool goes with it

    def stop(self, kill: bool = True) -> None:
        """Stop refilling; kill every ready slot, unless ``kill`` is false (then they
        stay ready to claim, and for the next run's :func:`unclaimed`)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        if not kill:
            return
        with self._cond:
            slots = [s for ready in self._ready.values() for s in ready]
            self._ready.clear()
        for slot_id in slots:
            with contextlib.suppress(Exception):
                self._kill(slot_id)
