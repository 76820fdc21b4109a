"""Our volume drivers against the interface of the real Cinder package.

tools/run-tests.sh installs cinder==29.0.0 in its own virtualenv and writes
its contract (``tools/cinder-signatures.py``: method names and
``inspect.signature`` strings of ``cinder.interface.volume_driver.
VolumeDriverCore`` and ``cinder.volume.driver.BaseVD``) to the file named
by ``GC_CINDER_SIGNATURES``. Every method our contract shares with Cinder
must have Cinder's exact signature in every driver.
"""

import inspect
import json
import os

import pytest

from gridcentric_storage.volume.drivers import base
from gridcentric_storage.volume.drivers.cinder import CinderDriver
from gridcentric_storage.volume.drivers.fake import FakeDriver
from gridcentric_storage.volume.drivers.file import FileDriver
from gridcentric_storage.volume.drivers.lvm import LVMDriver
from gridcentric_storage.volume.drivers.storpool import StorPoolDriver

DRIVERS = [base.VolumeDriver, FakeDriver, FileDriver, LVMDriver, StorPoolDriver, CinderDriver]
try:
    from gridcentric_storage.volume.drivers.rbd import RBDDriver
    DRIVERS.append(RBDDriver)
except ImportError:  # pragma: no cover - the module is part of the package
    pass

#: Methods of our contract (DESIGN.md section 4) that Cinder defines too.
CONTRACT = ('do_setup', 'check_for_setup_error', 'get_volume_stats', 'create_volume',
            'delete_volume', 'create_snapshot', 'delete_snapshot',
            'create_volume_from_snapshot', 'create_cloned_volume', 'extend_volume',
            'revert_to_snapshot', 'initialize_connection', 'terminate_connection',
            'create_export', 'ensure_export', 'remove_export', 'copy_image_to_volume',
            'copy_volume_to_image', 'clone_image', 'migrate_volume', 'retype')


@pytest.fixture(scope='module')
def cinder():
    path = os.environ.get('GC_CINDER_SIGNATURES')
    if not path or not os.path.exists(path):
        message = ('Cinder\'s contract is not available: tools/run-tests.sh installs '
                   'cinder==29.0.0 and sets GC_CINDER_SIGNATURES')
        if os.environ.get('GC_REQUIRE_SERVICES') == '1':
            pytest.fail(message)
        pytest.skip(message)
    with open(path) as f:
        return json.load(f)


#: VolumeDriverCore methods that serve Cinder's own volume manager (capability
#: reporting, throttling, migration bookkeeping), not the storage work a
#: driver does for us; our manager has its own ways for these.
MANAGER_HOOKS = {'after_volume_copy', 'before_volume_copy', 'init_capabilities',
                 'initialized', 'set_initialized', 'set_throttle', 'supported',
                 'update_migrated_volume', 'update_provider_info'}


def _cinder_signature(cinder, name):
    for interface in ('VolumeDriverCore', 'VolumeSnapshotRevertDriver', 'BaseVD'):
        if name in cinder[interface]:
            return cinder[interface][name]
    return None


def test_cinder_has_every_method_of_our_contract(cinder):
    missing = [name for name in CONTRACT if _cinder_signature(cinder, name) is None]
    assert missing == [], 'not in Cinder %s: %s' % (cinder['cinder_version'], missing)


def test_core_interface_is_covered(cinder):
    """Everything Cinder's VolumeDriverCore requires is in our base class."""
    ours = set(dir(base.VolumeDriver))
    assert sorted(set(cinder['VolumeDriverCore']) - ours - MANAGER_HOOKS) == []


def _parameters(function):
    """The same shape tools/cinder-signatures.py prints for Cinder."""
    return [[p.name, p.kind.name,
             'required' if p.default is inspect.Parameter.empty else repr(p.default)]
            for p in inspect.signature(function).parameters.values()]


@pytest.mark.parametrize('driver', DRIVERS, ids=lambda d: d.__name__)
@pytest.mark.parametrize('name', CONTRACT)
def test_signature_matches_cinder(cinder, driver, name):
    """Names, order, kinds and defaults of the parameters are Cinder's.

    A driver may accept more keyword arguments (``**kwargs``) than Cinder
    passes, never fewer, renamed or reordered ones.
    """
    ours = _parameters(getattr(driver, name))
    theirs = _cinder_signature(cinder, name)
    extra_kwargs = [p for p in ours if p[1] == 'VAR_KEYWORD']
    assert [p for p in ours if p[1] != 'VAR_KEYWORD'] == \
        [p for p in theirs if p[1] != 'VAR_KEYWORD'], (
        '%s.%s%s differs from Cinder %s: %s' % (driver.__name__, name, ours,
                                                cinder['cinder_version'], theirs))
    assert not extra_kwargs or any(p[1] == 'VAR_KEYWORD' for p in theirs) or \
        name == 'terminate_connection'


def test_the_comparison_catches_a_renamed_parameter(cinder):
    class Wrong(base.VolumeDriver):
        def extend_volume(self, vol, new_size):  # Cinder: (self, volume, new_size)
            pass

    assert _parameters(Wrong.extend_volume) != _cinder_signature(cinder, 'extend_volume')
