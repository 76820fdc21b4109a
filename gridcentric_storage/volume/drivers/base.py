"""The volume driver contract: Cinder's method names, signatures and stats keys.

A driver here reads like a Cinder driver (``cinder.volume.driver.BaseVD``), so
Cinder habits and reviewers carry over. This module only defines the
interface; one module per backend implements it, and ``fake.py`` is the
in-memory implementation for tests.

Differences from Cinder, on purpose:

* A driver is built from one backend row of the pool (``options`` dict
  validated against :attr:`VolumeDriver.OPTIONS_SCHEMA`), not from a
  cinder.conf section, because backends are registered at run time.
* ``get_volume_stats()`` returns Cinder's keys, e.g.::

    {'volume_backend_name': 'fast-ssd', 'vendor_name': 'Open Source',
     'driver_version': '1.0', 'storage_protocol': 'local',
     'total_capacity_gb': 99.8, 'free_capacity_gb': 61.2,
     'reserved_percentage': 0, 'thin_provisioning_support': True,
     'thick_provisioning_support': False, 'max_over_subscription_ratio': 20.0,
     'multiattach': False, 'QoS_support': False, 'online_extend_support': True}
"""

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import jsonschema

from gridcentric_storage.common import exception
from gridcentric_storage.volume.objects import SnapshotRef, VolumeRef

STATS_REQUIRED_KEYS = ('volume_backend_name', 'vendor_name', 'driver_version',
                       'storage_protocol', 'total_capacity_gb', 'free_capacity_gb')


class VolumeDriver(abc.ABC):
    #: JSON schema of the backend's ``options``; the API validates against it
    #: before anything is written, so a typo is a 400, not a broken backend.
    OPTIONS_SCHEMA: ClassVar[dict[str, Any]] = {
        'type': 'object', 'properties': {}, 'additionalProperties': False}
    #: Option names never returned by the API (passwords, keys, tokens).
    SECRET_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    #: Options that say where the volumes are: changing one under existing
    #: volumes would orphan them, so the API refuses it while any exist.
    LOCATION_OPTIONS: ClassVar[frozenset[str]] = frozenset()
    #: The ``driver_volume_type`` of :meth:`initialize_connection`, known
    #: before connecting, so a host can refuse what it cannot open up front.
    DRIVER_VOLUME_TYPE: ClassVar[str] = 'local'
    VERSION: ClassVar[str] = '1.0'

    def __init__(self, backend_id: str, backend_name: str,
                 options: Mapping[str, Any]) -> None:
        self.backend_id = backend_id
        self.backend_name = backend_name
        self.options = dict(options)
        try:
            jsonschema.validate(self.options, self.OPTIONS_SCHEMA)
        except jsonschema.ValidationError as e:
            driver = type(self).__module__.rsplit('.', 1)[-1]
            raise exception.InvalidDriverOptions(driver=driver, reason=e.message) from None

    @classmethod
    def default_options(cls, backend_id: str, state_path: str) -> dict[str, Any]:
        """Options filled in when the user leaves them out (none by default)."""
        return {}

    # ---- set-up and stats
    @abc.abstractmethod
    def do_setup(self, context: Any) -> None:
        """Prepare the backend (connect, create directories, ...)."""

    def delete_backend(self) -> None:
        """The backend was deleted: remove what :meth:`do_setup` created for it
        (never data the operator had there before). Nothing by default."""
        return None     # an optional hook, not an abstract method

    @abc.abstractmethod
    def check_for_setup_error(self) -> None:
        """Raise DriverError if the backend cannot be used."""

    @abc.abstractmethod
    def get_volume_stats(self, refresh: bool = False) -> dict[str, Any]:
        """Return capacity and capabilities with Cinder's keys (see module doc)."""

    # ---- volumes
    @abc.abstractmethod
    def create_volume(self, volume: VolumeRef) -> dict[str, Any] | None:
        """Create a blank volume of ``volume.size`` GiB; return a model update."""

    @abc.abstractmethod
    def delete_volume(self, volume: VolumeRef) -> None:
        """Delete the volume; deleting a volume that is already gone succeeds."""

    def extend_volume(self, volume: VolumeRef, new_size: int) -> None:
        raise NotImplementedError()

    def set_qos(self, volume: VolumeRef, limits: Mapping[str, int]) -> None:
        """Enforce ``limits`` (``volume.qos`` fixed keys, e.g. ``{'total_iops_sec':
        600}``) on the volume, replacing any it had; ``{}`` removes them. Not ours
        in Cinder's interface (its drivers read the volume type); a backend that
        cannot limit I/O refuses any limit and accepts none."""
        if limits:
            raise exception.QosNotSupported(driver=type(self).__name__,
                                            reason='this backend cannot limit I/O')

    # ---- snapshots and clones
    def create_snapshot(self, snapshot: SnapshotRef) -> dict[str, Any] | None:
        """``snapshot.get('quiesced')`` is true when the volume's attacher is paused
        and flushed (a bless): a driver may then copy data it could not freeze."""
        raise NotImplementedError()

    def delete_snapshot(self, snapshot: SnapshotRef) -> None:
        raise NotImplementedError()

    def create_volume_from_snapshot(self, volume: VolumeRef,
                                    snapshot: SnapshotRef) -> dict[str, Any] | None:
        raise NotImplementedError()

    def create_cloned_volume(self, volume: VolumeRef,
                             src_vref: VolumeRef) -> dict[str, Any] | None:
        raise NotImplementedError()

    def revert_to_snapshot(self, context: Any, volume: VolumeRef,
                           snapshot: SnapshotRef) -> None:
        raise NotImplementedError()

    # ---- export and attach
    def create_export(self, context: Any, volume: VolumeRef,
                      connector: dict[str, Any]) -> dict[str, Any] | None:
        return None

    def ensure_export(self, context: Any, volume: VolumeRef) -> dict[str, Any] | None:
        return None

    def remove_export(self, context: Any, volume: VolumeRef) -> None:
        return None

    @abc.abstractmethod
    def initialize_connection(self, volume: VolumeRef, connector: dict[str, Any],
                              initiator_data: Any = None) -> dict[str, Any]:
        """Return ``{'driver_volume_type': ..., 'data': {...}}`` for os-brick."""

    @abc.abstractmethod
    def terminate_connection(self, volume: VolumeRef, connector: dict[str, Any] | None,
                             **kwargs: Any) -> None:
        """End one connector's access, or every access when connector is None."""

    # ---- images, migration, retype
    #
    # ``image_service`` is a gridcentric_storage.image.base.ImageSource; pass it
    # the ``context`` the driver got, which decides the images the caller may use:
    # ``image_service.info(context, image_id)`` gives ``disk_format`` ('raw' or
    # 'qcow2', probed: give it to qemu-img with -f, never let it guess) and
    # ``virtual_size`` (bytes), ``image_service.path(context, image_id)`` the
    # local file. copy_volume_to_image writes the whole volume to the new file
    # ``image_meta['path']`` in ``image_meta['disk_format']``, reading the
    # volume in the format the driver made it (-f), never a guessed one.
    def copy_image_to_volume(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_id: str, disable_sparse: bool = False) -> None:
        raise NotImplementedError()

    def copy_volume_to_image(self, context: Any, volume: VolumeRef, image_service: Any,
                             image_meta: dict[str, Any]) -> None:
        raise NotImplementedError()

    def clone_image(self, context: Any, volume: VolumeRef, image_location: Any,
                    image_meta: dict[str, Any], image_service: Any) -> tuple[Any, bool]:
        return None, False

    def migrate_volume(self, context: Any, volume: VolumeRef,
                       host: dict[str, Any]) -> tuple[bool, dict[str, Any] | None]:
        return False, None

    def retype(self, context: Any, volume: VolumeRef, new_type: Any, diff: Any,
               host: dict[str, Any]) -> bool | tuple[bool, dict[str, Any] | None]:
        return False
