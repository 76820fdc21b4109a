"""Every status a resource can have, and the moves between them.

One table per state machine. Each machine has one owner that writes it
(``doc/architecture.md`` lists them): volumes, snapshots and attachments are
moved only by ``volume.api`` (API side) and ``volume.manager`` (owner host),
through ``volume.status``; servers and live images only by ``compute.api``
and ``compute.servers``. A move that is not in the table raises
:class:`~gridcentric_storage.common.exception.IllegalTransition` before
anything is written.

Writing the status a resource already has is always allowed: a step run
again after a restart, or a new ``status_reason``, is not a move.
"""

import dataclasses
import enum
from collections.abc import Iterable, Mapping

from gridcentric_storage.common import exception


class VolumeStatus(enum.StrEnum):
    CREATING = 'creating'
    AVAILABLE = 'available'
    ATTACHING = 'attaching'
    IN_USE = 'in-use'
    EXTENDING = 'extending'
    REVERTING = 'reverting'
    UPLOADING = 'uploading'        # read out: to an image or a download stream
    DOWNLOADING = 'downloading'    # written from an upload stream
    MIGRATING = 'migrating'        # its data moves to another backend
    DELETING = 'deleting'
    ERROR = 'error'
    ERROR_DELETING = 'error_deleting'


class SnapshotStatus(enum.StrEnum):
    CREATING = 'creating'
    AVAILABLE = 'available'
    RESTORING = 'restoring'        # its volume is being reverted to it
    DELETING = 'deleting'
    ERROR = 'error'
    ERROR_DELETING = 'error_deleting'


class AttachmentStatus(enum.StrEnum):
    ATTACHING = 'attaching'
    ATTACHED = 'attached'
    DETACHING = 'detaching'
    ERROR = 'error'


class ServerStatus(enum.StrEnum):
    BUILD = 'BUILD'
    ACTIVE = 'ACTIVE'
    PAUSED = 'PAUSED'
    ERROR = 'ERROR'


class ServerTask(enum.StrEnum):
    """``task_state``: work running on an ACTIVE server (``NONE``: none)."""

    NONE = ''
    BLESSING = 'blessing'
    DELETING = 'deleting'
    MIGRATING = 'migrating'        # live migration to another host (compute.server_migration)


class LiveImageStatus(enum.StrEnum):
    BLESSING = 'blessing'
    BLESSED = 'blessed'
    DISCARDING = 'discarding'
    ERROR = 'error'


class CacheEntryStatus(enum.StrEnum):
    """A template-cache entry (owned by ``volume.image_cache`` alone)."""

    CREATING = 'creating'
    AVAILABLE = 'available'
    ERROR = 'error'


@dataclasses.dataclass(frozen=True)
class StateMachine:
    resource: str
    moves: Mapping[str, frozenset[str]]

    @property
    def states(self) -> frozenset[str]:
        return frozenset(self.moves) | frozenset().union(*self.moves.values())

    def allows(self, current: str, new: str) -> bool:
        return current == new or new in self.moves.get(current, frozenset())

    def check(self, resource_id: str, current: str | Iterable[str], new: str) -> None:
        """Raise IllegalTransition unless ``new`` may follow every state in ``current``."""
        for state in [current] if isinstance(current, str) else current:
            if not self.allows(state, new):
                raise exception.IllegalTransition(resource=self.resource, id=resource_id,
                                                  current=state, new=new)

    def sources(self, new: str) -> tuple[str, ...]:
        """The states a resource may be in to move to ``new`` (itself included)."""
        return tuple(sorted({new} | {s for s, targets in self.moves.items()
                                     if new in targets}))


def _table(moves: dict[str, Iterable[str]]) -> Mapping[str, frozenset[str]]:
    return {state: frozenset(targets) for state, targets in moves.items()}


V = VolumeStatus
VOLUME = StateMachine('Volume', _table({
    V.CREATING: {V.AVAILABLE, V.ERROR},
    V.AVAILABLE: {V.ATTACHING, V.IN_USE, V.EXTENDING, V.REVERTING, V.UPLOADING,
                  V.DOWNLOADING, V.DELETING, V.MIGRATING},
    # in-use -> attaching: a second attachment of a multiattach volume.
    V.IN_USE: {V.AVAILABLE, V.ATTACHING, V.EXTENDING, V.DELETING, V.MIGRATING},
    V.ATTACHING: {V.IN_USE, V.AVAILABLE},
    V.EXTENDING: {V.AVAILABLE, V.IN_USE},
    V.REVERTING: {V.AVAILABLE, V.ERROR},
    # A read (export or download) never changes the data: back to where it was.
    V.UPLOADING: {V.AVAILABLE, V.IN_USE},
    V.DOWNLOADING: {V.AVAILABLE, V.ERROR},
    # The source is never touched before the switch: success or failure, the
    # volume goes back to where it was (``migration_status`` tells which).
    V.MIGRATING: {V.AVAILABLE, V.IN_USE},
    V.DELETING: {V.ERROR_DELETING},
    V.ERROR: {V.DELETING},
    V.ERROR_DELETING: {V.DELETING},
}))

S = SnapshotStatus
SNAPSHOT = StateMachine('Snapshot', _table({
    S.CREATING: {S.AVAILABLE, S.ERROR},
    S.AVAILABLE: {S.RESTORING, S.DELETING},
    S.RESTORING: {S.AVAILABLE},
    S.DELETING: {S.ERROR_DELETING},
    S.ERROR: {S.DELETING},
    S.ERROR_DELETING: {S.DELETING},
}))

A = AttachmentStatus
ATTACHMENT = StateMachine('Attachment', _table({
    A.ATTACHING: {A.ATTACHED, A.ERROR},
    A.ATTACHED: {A.DETACHING},
    A.DETACHING: {A.ERROR},
    A.ERROR: {A.DETACHING},
}))

SERVER = StateMachine('Server', _table({
    ServerStatus.BUILD: {ServerStatus.ACTIVE, ServerStatus.ERROR},
    ServerStatus.ACTIVE: {ServerStatus.PAUSED, ServerStatus.ERROR},
    ServerStatus.PAUSED: {ServerStatus.ACTIVE, ServerStatus.ERROR},
}))

T = ServerTask
SERVER_TASK = StateMachine('Server task', _table({
    T.NONE: {T.BLESSING, T.DELETING, T.MIGRATING},
    T.BLESSING: {T.NONE},
    # Success or failure, the guest runs (on one host or the other) with no task.
    T.MIGRATING: {T.NONE},
    # A delete that fails ends with no task, the server in ERROR.
    T.DELETING: {T.NONE},
}))

L = LiveImageStatus
LIVE_IMAGE = StateMachine('Live image', _table({
    L.BLESSING: {L.BLESSED, L.ERROR},
    L.BLESSED: {L.DISCARDING},
    # discarding -> blessed/error: a launch raced the discard and won.
    L.DISCARDING: {L.BLESSED, L.ERROR},
    L.ERROR: {L.DISCARDING},
}))

C = CacheEntryStatus
CACHE_ENTRY = StateMachine('Image cache entry', _table({
    C.CREATING: {C.AVAILABLE, C.ERROR},
    # available -> error: a purge whose delete failed.
    C.AVAILABLE: {C.ERROR},
}))

#: Volume states in which work is under way on the owner host.
VOLUME_BUSY = (V.CREATING, V.ATTACHING, V.EXTENDING, V.REVERTING, V.UPLOADING,
               V.DOWNLOADING, V.DELETING, V.MIGRATING)
VOLUME_DELETABLE = (V.AVAILABLE, V.ERROR, V.ERROR_DELETING, V.IN_USE)
SNAPSHOT_DELETABLE = (S.AVAILABLE, S.ERROR, S.ERROR_DELETING)
#: Attachments that hold an export open (the volume is in use while any exists).
ATTACHMENT_LIVE = (A.ATTACHING, A.ATTACHED, A.DETACHING)


class MigrationStatus(enum.StrEnum):
    """A volume's ``migration_status`` (Cinder's values); NULL: never migrated.

    Not a status machine of its own: it records how the last migration went,
    while ``status`` is ``migrating``. The temporary destination row of a
    migration carries ``target:<source id>`` (:func:`migration_target`).
    """

    STARTING = 'starting'
    MIGRATING = 'migrating'
    COMPLETING = 'completing'
    SUCCESS = 'success'
    ERROR = 'error'


MIGRATION_TARGET_PREFIX = 'target:'


def migration_target(source_id: str) -> str:
    return MIGRATION_TARGET_PREFIX + source_id
