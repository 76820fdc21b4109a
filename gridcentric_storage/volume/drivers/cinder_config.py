"""Cinder in this process: importing it safely, and one backend's Cinder configuration.

Cinder keeps its options in oslo.config's global ``cfg.CONF``, the object this
service uses too, and registers them when its modules are imported. Left
alone, that collides with this service in two ways, both seen with Cinder 29:

* Cinder's ``[DEFAULT] state_path``, ``host`` and ``default_availability_zone``
  differ from ours, so importing ``cinder.volume.driver`` raises
  ``DuplicateOptError``;
* ``cinder.db.api`` calls oslo.db's ``set_defaults`` at import, which would turn
  our default ``[database] connection`` into ``sqlite:///$state_path/cinder.sqlite``.

A private ``ConfigOpts`` swapped in for the import does not work: every library
first imported in that window (os-brick connectors, keystonemiddleware, ...)
would keep the private object for good, and oslo.privsep reads ``cfg.CONF`` at
call time. So :func:`import_cinder` imports Cinder into the global object
with two guards, only while it imports: an option already registered here keeps
its definition (Cinder's duplicate is skipped and Cinder reads ours), and its
default (Cinder's ``set_default`` on it is ignored); ``[nova]`` gets none of
Cinder's options (see ``_OURS``). What Cinder therefore
shares with this service (Cinder 29, logged at import): ``[DEFAULT] host``,
``state_path`` and ``default_availability_zone``, the
oslo library groups (``[oslo_concurrency] lock_path``, ``[database]``,
logging), and nothing else. Its imports also run eventlet's ``import_patched``,
which leaves green copies of stdlib modules on their packages (``http.server``);
those are put back (:func:`_repair_packages`). Cinder's own options
(``[DEFAULT] volume_driver``, ``[backend_defaults]``, ...) sit unused beside ours.

Each backend gets Cinder's own :class:`cinder.volume.configuration.Configuration`
on a group of its own, ``cinder_backend_<backend id>``, holding only the
backend's ``driver_options`` (set with ``set_override`` on that group, so
nothing outside it changes); an option left out falls back to
``[backend_defaults]`` and Cinder's default, as in a cinder.conf backend
section. Backend options whose default lies under ``$state_path``
(``volumes_dir``, NFS drivers' ``nfs_mount_point_base``, ...) default to
``$state_path/cinder/<backend id>/...`` instead, so no Cinder directory lands
among this service's own files (``$state_path/volumes`` is the file backend's).
"""

import importlib.metadata
import logging
import re
import sys
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from oslo_config import cfg, types
from oslo_utils import importutils

from gridcentric_storage.common import exception

LOG = logging.getLogger(__name__)
CONF = cfg.CONF
MISSING = 'driver cinder needs the cinder package (PyPI cinder >= 29) on this host'
MIN_VERSION = (29,)
#: Cinder modules imported inside the guarded window: the volume driver base and
#: the modules drivers import lazily that register options.
_CINDER_MODULES = ('cinder.common.config', 'cinder.objects', 'cinder.context',
                   'cinder.volume.configuration', 'cinder.volume.driver',
                   'cinder.volume.volume_utils', 'cinder.image.image_utils',
                   'cinder.image.glance', 'cinder.compute.nova', 'cinder.privsep')
#: Options drivers read with ``getattr`` but never register (cinderlib's), by driver
_UNREGISTERED = {'cinder.volume.drivers.rbd.RBDDriver': (
    cfg.StrOpt('rbd_keyring_conf', help='Keyring file whose text goes into connection '
               'info (for hosts without /etc/ceph).'),)}
#: Groups Cinder may not add to. ``[nova]`` is gridcentric-api's Nova client,
#: whose keystoneauth options are registered when that starts: Cinder's
#: ``[nova] interface`` (default ``public``) beside keystoneauth's
#: ``valid_interfaces`` makes keystoneauth refuse to load the adapter at all.
#: Cinder reads its ``[nova]`` only in its own Nova client (assisted snapshots),
#: which nothing runs here.
_OURS = frozenset({'nova'})
_import_lock = threading.Lock()
_imported = False


def _error(reason: str) -> exception.DriverError:
    return exception.DriverError(reason=reason)


def _repair_packages() -> list[str]:
    """Undo what eventlet's ``import_patched`` (run by Cinder's imports) leaves on
    packages: ``http.server`` read as an attribute of ``http`` became a green copy
    (its ``socketserver`` waits on eventlet locks, so a plain-threaded HTTP server
    made from it deadlocks). Point such attributes back at the real modules."""
    green = {id(m) for name, m in list(sys.modules.items())
             if name.startswith('__patched_module_') and m is not None}
    repaired = []
    for name, module in list(sys.modules.items()):
        if module is None or not hasattr(module, '__path__'):
            continue
        for attr, value in list(vars(module).items()):
            real = sys.modules.get(f'{name}.{attr}')
            if id(value) in green and real is not None and real is not value:
                setattr(module, attr, real)
                repaired.append(f'{name}.{attr}')
    return repaired


@contextmanager
def _guarded(conf: cfg.ConfigOpts) -> Iterator[list[str]]:
    """While Cinder imports: keep every option registered before as it is (its
    definition and its default). Yields what was skipped, for the log."""
    skipped: list[str] = []
    added: set[tuple[str, str | None]] = set()  # registered inside the window
    register_opt, set_default = conf.register_opt, conf.set_default
    register_cli_opt = conf.register_cli_opt

    def guarded_register(opt: cfg.Opt, group: Any = None, *args: Any, **kwargs: Any) -> bool:
        if _group_name(group) in _OURS:
            skipped.append(f'[{_group_name(group)}] {opt.dest}')
            return False
        try:
            new = bool(register_opt(opt, group, *args, **kwargs))
        except cfg.DuplicateOptError:
            skipped.append(f'[{_group_name(group) or "DEFAULT"}] {opt.dest}')
            return False
        if new:
            added.add((opt.dest, _group_name(group)))
        return new

    def guarded_cli(opt: cfg.Opt, group: Any = None, *args: Any, **kwargs: Any) -> bool:
        try:
            return bool(register_cli_opt(opt, group, *args, **kwargs))
        except cfg.ArgsAlreadyParsedError:  # our command line is parsed: no CLI for it
            return guarded_register(opt, group)

    def guarded_default(name: str, default: Any, group: Any = None) -> None:
        if (name, _group_name(group)) not in added:
            skipped.append(f'the default of [{_group_name(group) or "DEFAULT"}] {name}')
            return
        set_default(name, default, group=group)

    conf.register_opt = guarded_register  # type: ignore[method-assign]
    conf.set_default = guarded_default  # type: ignore[method-assign]
    conf.register_cli_opt = guarded_cli  # type: ignore[method-assign]
    try:
        yield skipped
    finally:
        del conf.register_opt
        del conf.register_cli_opt
        del conf.set_default
        repaired = _repair_packages()
        if repaired:
            LOG.info('After Cinder\'s imports: %s are the real modules again',
                     ', '.join(repaired))


def _group_name(group: Any) -> str | None:
    name = getattr(group, 'name', group)
    return None if name in (None, 'DEFAULT') else str(name)


def _version() -> tuple[int, ...]:
    try:
        text = importlib.metadata.version('cinder')
    except importlib.metadata.PackageNotFoundError:  # a source tree on the path
        return MIN_VERSION
    return tuple(int(part) for part in re.findall(r'\d+', text)[:3])


def import_cinder(volume_driver: str) -> type:
    """Import Cinder (once, guarded: module doc) and return the driver class."""
    global _imported
    with _import_lock:
        if not _imported:
            try:
                import cinder  # noqa: F401
            except ImportError as e:
                raise _error(f'{MISSING} ({e})') from None
            version = _version()
            if version < MIN_VERSION:
                raise _error(f'{MISSING}; it has cinder {".".join(map(str, version))}')
            with _guarded(CONF) as skipped:
                for module in _CINDER_MODULES:
                    __import__(module)
                import cinder.objects
                cinder.objects.register_all()
            LOG.info('Cinder imported; this service kept its own %s',
                     ', '.join(dict.fromkeys(skipped)))
            _imported = True
        with _guarded(CONF) as skipped:
            try:
                cls: type = importutils.import_class(volume_driver)
            except (ImportError, AttributeError) as e:
                raise _error(f'cannot load Cinder driver {volume_driver}: {e}') from None
        if skipped:
            LOG.info('Cinder driver %s: this service kept its own %s', volume_driver,
                     ', '.join(dict.fromkeys(skipped)))
    from cinder.volume import driver as cinder_driver
    if not (isinstance(cls, type) and issubclass(cls, cinder_driver.BaseVD)):
        raise _error(f'{volume_driver} is not a Cinder volume driver')
    return cls


def driver_opts(volume_driver: str, cls: type) -> dict[str, cfg.Opt]:
    """Every option a backend section of cinder.conf may set for this driver."""
    from cinder.volume import driver as cinder_driver

    opts: list[cfg.Opt] = []
    for group in (cinder_driver.volume_opts, cinder_driver.iser_opts,
                  cinder_driver.nvmeof_opts, cinder_driver.nvmet_opts,
                  cinder_driver.scst_opts, cinder_driver.image_opts):
        opts += group
    opts += list(cls.get_driver_options())  # type: ignore[attr-defined]
    opts += _UNREGISTERED.get(volume_driver, ())
    return {opt.dest: opt for opt in opts}


def check_options(opts: Mapping[str, cfg.Opt], values: Mapping[str, Any],
                  secrets: Mapping[str, Any]) -> None:
    """Refuse names the driver does not have, secrets given in the clear, and
    values its option types refuse (oslo.config's own checks)."""
    for name, value in {**values, **secrets}.items():
        opt = opts.get(name)
        if opt is None:
            raise exception.InvalidDriverOptions(
                driver='cinder', reason=f'the Cinder driver has no option {name}')
        if opt.secret and name in values:
            raise exception.InvalidDriverOptions(
                driver='cinder', reason=f'{name} is a secret: give it in driver_secrets')
        shown = '***' if opt.secret or name in secrets else repr(value)
        try:
            if isinstance(value, list) and not isinstance(opt.type, types.List):
                if not opt.multi:
                    raise ValueError('takes one value, not a list')
                for item in value:
                    opt.type(item)
            elif isinstance(value, dict) and not isinstance(opt.type, types.Dict):
                raise ValueError('takes one value, not a mapping')
            else:
                opt.type(value)
        except (ValueError, TypeError) as e:
            raise exception.InvalidDriverOptions(
                driver='cinder', reason=f'{name}={shown}: {e}') from None


def configuration(backend_id: str, state_path: str, opts: Mapping[str, cfg.Opt],
                  values: Mapping[str, Any]) -> Any:
    """Cinder's Configuration for one backend, on its own group (module doc)."""
    from cinder.volume import configuration as cinder_configuration

    group = f'cinder_backend_{backend_id}'
    forget(backend_id)  # set up again with new options: none of the old ones stay
    conf = cinder_configuration.Configuration(list(opts.values()), config_group=group)
    own_dir = f'{state_path}/cinder/{backend_id}'
    for opt in opts.values():
        if isinstance(opt.default, str) and opt.default.startswith('$state_path'):
            CONF.set_override(opt.dest, opt.default.replace('$state_path', own_dir, 1),
                              group=group)
    for name, value in values.items():
        CONF.set_override(name, value, group=group)
    return conf


def forget(backend_id: str) -> None:
    """Drop a backend's overrides (its group's options stay registered: oslo.config
    cannot unregister an option another backend's driver may share)."""
    group = f'cinder_backend_{backend_id}'
    if group in CONF:
        for name in list(CONF[group]):
            CONF.clear_override(name, group=group)
