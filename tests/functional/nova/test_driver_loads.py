"""A stock Nova 34 loads ``compute_driver = gridcentric.LibvirtDriver``; its spawn
refuses the live images an instance may not resume before Nova does any work,
and resumes the ones it may.

Runs under Nova's own venv (``GC_NOVA_VENV``, default /opt/gc-nova-venv) with
this checkout installed into it as tools/nova.sh does (``pip install
--no-deps -e``, whose .pth installs the ``nova.virt.gridcentric`` alias).
Loading and refusing need no libvirtd (Nova's libvirt driver connects on
first use); resuming blesses a Nova-style domain with ``nova.bless`` and
starts clones through the driver's ``_create_guest`` over Nova's own
libvirt Host and Guest (the rest of a spawn is Nova's, exercised by the
stack test).
"""

import contextlib
import json
import os
import subprocess
import uuid
from pathlib import Path
from typing import Any

import pytest

from gridcentric_storage.nova import bless, manifest
from gridcentric_storage.virt import qemu_live as live
from tests.fixtures import guest
from tests.fixtures.services import wait_for
from tests.functional.nova.test_bless_libvirt import (  # the same Nova-style domain
    URI,
    Host,
    _domain_xml,
    booted,
    console,
    host,  # noqa: F401 - the fixture
    nova_disks,
    qemu_img,
)
from tests.functional.virt.conftest import libvirtd  # noqa: F401 - the shared fixture

ROOT = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get('GC_NOVA_VENV', '/opt/gc-nova-venv'))
PYTHON = VENV / 'bin' / 'python'


def _nova_python(code: str, timeout: float = 120, stdin: str = '') -> Any:
    """Run ``code`` under Nova's venv; the JSON it prints last."""
    proc = subprocess.run([str(PYTHON), '-c', code], capture_output=True, text=True,
                          timeout=timeout, cwd='/', input=stdin)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.splitlines()[-1])


def _require_installed() -> None:
    if not PYTHON.exists():
        pytest.skip('no Nova venv at %s (tools/nova.sh builds it)' % VENV,
                    allow_module_level=True)
    where = subprocess.run(
        [str(PYTHON), '-c', 'import sys, gridcentric_storage.nova.virt_alias as a; '
         'print(a.__file__); print(type(sys.meta_path[0]).__name__)'],
        capture_output=True, text=True, cwd='/').stdout.split()
    if not where or where[0] != str(ROOT / 'gridcentric_storage' / 'nova' / 'virt_alias.py'):
        pytest.skip('this checkout is not installed in %s: %s/bin/pip install --no-deps '
                    '--no-build-isolation -e %s qemu.qmp (tools/nova.sh start does)'
                    % (VENV, VENV, ROOT), allow_module_level=True)
    if where[1:] != ['AliasFinder']:
        pytest.fail('gridcentric_storage_nova.pth did not install the alias finder in %s: %s'
                    % (VENV, where))


_require_installed()

PRELUDE = '''
import json
import nova.conf
from nova import objects
from nova.virt import driver, fake
CONF = nova.conf.CONF
CONF([], project='nova', default_config_files=[])
objects.register_all()
'''


def test_stock_load_compute_driver_returns_our_driver() -> None:
    result = _nova_python(PRELUDE + '''
import importlib
from nova.virt.libvirt import driver as libvirt_driver
import gridcentric_storage.nova.virt as ours
alias = importlib.import_module('nova.virt.gridcentric')
d = driver.load_compute_driver(fake.FakeVirtAPI(), 'gridcentric.LibvirtDriver')
print(json.dumps({
    'class': type(d).__module__ + '.' + type(d).__name__,
    'ours': isinstance(d, ours.LibvirtDriver),
    'novas': isinstance(d, libvirt_driver.LibvirtDriver),
    'same_class': ours.LibvirtDriver is alias.LibvirtDriver,
    'live_images_path': CONF.gridcentric.live_images_path,
}))
''')
    assert result == {'class': 'gridcentric_storage.nova.virt.driver.LibvirtDriver',
                      'ours': True, 'novas': True, 'same_class': True,
                      'live_images_path': '/var/lib/gridcentric-storage/live-images'}


def test_spawn_refuses_live_images_the_instance_may_not_resume(tmp_path: Path) -> None:
    root = tmp_path / 'live-images'
    result = _nova_python(PRELUDE + '''
import os
from nova import exception
from gridcentric_storage.nova import manifest
root = %(root)r
d = driver.load_compute_driver(fake.FakeVirtAPI(), 'gridcentric.LibvirtDriver')
CONF.set_override('live_images_path', root, group='gridcentric')   # registered by the driver

def live_image(li_id, project_id, ram_mb, files=True):
    directory = os.path.join(root, li_id)
    os.makedirs(directory)
    paths = {n: os.path.join(directory, n) for n in ('ram', 'state', 'vda.qcow2', 'domain.xml')}
    for path in paths.values() if files else []:
        open(path, 'w').close()
    manifest.write(directory, manifest.NovaLiveImage(
        live_image_id=li_id, project_id=project_id, source_instance='src',
        ram_path=paths['ram'], ram_size=ram_mb << 20, ram_block='gc.ram',
        state_path=paths['state'], disks={'vda': paths['vda.qcow2']},
        domain_xml_path=paths['domain.xml']))

live_image('li-other', 'p2', 128)
live_image('li-big', 'p1', 256)
live_image('li-gone', 'p1', 128, files=False)
out = {}
os.makedirs(os.path.join(os.path.dirname(root), 'elsewhere'))
for li_id in ('li-absent', 'li-other', 'li-big', 'li-gone', '../elsewhere', root):
    instance = objects.Instance(uuid='6f1c3b6e-0d55-4a43-8a7c-1f2e3d4c5b6a', project_id='p1',
                                metadata={'launched_from': li_id}, vm_state='building',
                                task_state='spawning',
                                flavor=objects.Flavor(name='gc-tiny', memory_mb=128))
    try:
        d.spawn(None, instance, None, [], None, {})
        out[li_id] = 'spawned'
    except Exception as e:
        out[li_id] = [type(e).__name__, e.format_message()]
print(json.dumps(out))
''' % {'root': str(root)})
    prefix = 'Build of instance 6f1c3b6e-0d55-4a43-8a7c-1f2e3d4c5b6a '
    assert result == {
        # another host may hold it (the scheduler filter should not have sent it here)
        'li-absent': ['RescheduledException', prefix + 'was re-scheduled: live image li-absent '
                      'is not on this host'],
        # a member must not resume another project's memory by setting metadata
        'li-other': ['BuildAbortException', prefix + 'aborted: cannot resume live image '
                     "li-other: it is not a live image of this instance's project"],
        'li-big': ['BuildAbortException', prefix + 'aborted: cannot resume live image li-big: '
                   'its RAM is 256 MiB, the flavor gc-tiny has 128 MiB'],
        'li-gone': ['BuildAbortException', prefix + 'aborted: cannot resume live image '
                    'li-gone: its files on this host are incomplete'],
        # metadata is the member's: it names no directory outside live_images_path
        '../elsewhere': ['BuildAbortException', prefix + 'aborted: cannot resume live image '
                         '../elsewhere: that is no live image id'],
        str(root): ['BuildAbortException', prefix + 'aborted: cannot resume live image '
                    '%s: that is no live image id' % root],
    }


def test_a_live_image_not_on_this_host_comes_from_gridcentric_compute_or_fails_saying_why(
        tmp_path: Path) -> None:
    """With [gridcentric] published_live_images, a clone whose live image has no
    directory here asks this host's gridcentric-compute (compute RPC 2.8, a
    stand-in client here; the Nova lane's operator flow runs the real one) and
    checks the manifest of the copy it names as it checks a blessed one."""
    store = tmp_path / 'store-cache'
    result = _nova_python(PRELUDE + '''
import os
import oslo_messaging as messaging
from gridcentric_storage.common import exception as gc_exception
from gridcentric_storage.nova import manifest
store, root = %(store)r, %(root)r
d = driver.load_compute_driver(fake.FakeVirtAPI(), 'gridcentric.LibvirtDriver')
CONF.set_override('live_images_path', root, group='gridcentric')
CONF.set_override('published_live_images', True, group='gridcentric')
CONF.set_override('host', 'compute-1')
directory = os.path.join(store, 'li-fetched')
os.makedirs(directory)
paths = {n: os.path.join(directory, n) for n in ('ram', 'state', 'vda.qcow2', 'domain.xml')}
for path in paths.values():
    open(path, 'w').close()
manifest.write(directory, manifest.NovaLiveImage(
    live_image_id='li-fetched', project_id='p2', source_instance='src',
    ram_path=paths['ram'], ram_size=128 << 20, ram_block='gc.ram',
    state_path=paths['state'], disks={'vda': paths['vda.qcow2']},
    domain_xml_path=paths['domain.xml']))

class Compute:
    calls = []
    def prepare_nova_live_image(self, host, live_image_id, request_id, project_id):
        self.calls.append([host, live_image_id, project_id])
        if live_image_id == 'li-changed':
            raise gc_exception.LiveImageFilesMissing(
                id=live_image_id, reason='its published domain.xml does not match the '
                'sha256 recorded at publish time')
        if live_image_id == 'li-silent':
            raise messaging.MessagingTimeout('no reply')
        if live_image_id == 'li-renamed':
            return os.path.join(store, 'li-fetched')
        return os.path.join(store, live_image_id)

d._compute = Compute()
out = {}
for li_id in ('li-fetched', 'li-changed', 'li-silent', 'li-renamed'):
    instance = objects.Instance(uuid='6f1c3b6e-0d55-4a43-8a7c-1f2e3d4c5b6a', project_id='p1',
                                metadata={'launched_from': li_id}, vm_state='building',
                                task_state='spawning',
                                flavor=objects.Flavor(name='gc-tiny', memory_mb=128))
    try:
        d.spawn(None, instance, None, [], None, {})
        out[li_id] = 'spawned'
    except Exception as e:
        out[li_id] = [type(e).__name__, e.format_message()]
out['calls'] = Compute.calls
print(json.dumps(out))
''' % {'store': str(store), 'root': str(tmp_path / 'live-images')})
    prefix = 'Build of instance 6f1c3b6e-0d55-4a43-8a7c-1f2e3d4c5b6a aborted: '
    assert result == {
        # the store's copy is checked as a blessed one: here, another project's
        'li-fetched': ['BuildAbortException', prefix + 'cannot resume live image li-fetched: '
                       "it is not a live image of this instance's project"],
        # gridcentric-compute's refusal is the clone's fault, word for word
        'li-changed': ['BuildAbortException', prefix + 'Live image li-changed cannot be used: '
                       'its published domain.xml does not match the sha256 recorded at '
                       'publish time'],
        'li-silent': ['BuildAbortException', prefix + 'cannot resume live image li-silent: '
                      'the gridcentric-compute of its host did not answer'],
        'li-renamed': ['BuildAbortException', prefix + 'cannot resume live image li-renamed: '
                       'gridcentric-compute named another directory'],
        'calls': [['compute-1', li, 'p1'] for li in (
            'li-fetched', 'li-changed', 'li-silent', 'li-renamed')],
    }


def test_only_the_first_spawn_of_a_clone_resumes_its_live_image() -> None:
    result = _nova_python(PRELUDE + '''
from gridcentric_storage.nova.virt import driver as ours
out = {}
for what, metadata, vm_state, task_state in [
        ('build', {'launched_from': 'li-1'}, 'building', 'spawning'),
        ('build of a server that is no clone', {'role': 'web'}, 'building', 'spawning'),
        ('rebuild', {'launched_from': 'li-1'}, 'active', 'rebuild_spawning'),
        ('evacuate', {'launched_from': 'li-1'}, 'error', 'rebuild_spawning'),
        ('unshelve', {'launched_from': 'li-1'}, 'shelved_offloaded', 'spawning'),
        ('cross-cell resize', {'launched_from': 'li-1'}, 'active', 'resize_finish')]:
    instance = objects.Instance(metadata=metadata, vm_state=vm_state, task_state=task_state)
    out[what] = ours.live_image_to_resume(instance)
print(json.dumps(out))
''')
    assert result == {'build': 'li-1', 'build of a server that is no clone': None,
                      'rebuild': None, 'evacuate': None, 'unshelve': None,
                      'cross-cell resize': None}


RUNNING, PAUSED = 1, 3          # nova.compute.power_state

RESUME = PRELUDE + '''
import sys, time
from gridcentric_storage.nova.virt import driver as ours
args = json.loads(sys.stdin.read())
CONF.set_override('virt_type', 'qemu', group='libvirt')
CONF.set_override('connection_uri', args['uri'], group='libvirt')
d = driver.load_compute_driver(fake.FakeVirtAPI(), 'gridcentric.LibvirtDriver')
CONF.set_override('live_images_path', args['live_images'], group='gridcentric')
out = []
for clone in args['clones']:
    instance = objects.Instance(uuid=clone['uuid'], project_id=args['project'],
                                metadata={'launched_from': args['live_image']},
                                vm_state='building', task_state='spawning',
                                flavor=objects.Flavor(name='f', memory_mb=args['memory_mb']),
                                numa_topology=None)
    # what spawn does before Nova prepares the instance and calls _create_guest
    started = time.monotonic()
    live_image = ours.live_image_to_resume(instance)
    d._resuming[instance.uuid] = ours._Resume(d._live_image(None, instance, live_image), started)
    try:
        guest = d._create_guest(None, clone['xml'], instance, power_on=True,
                                pause=clone['pause'])
    except Exception as e:
        out.append({'error': [type(e).__name__, e.format_message()]})
        continue
    finally:
        del d._resuming[instance.uuid]
    states = [guest.get_power_state(None)]
    if clone['pause']:      # as _create_guest_with_network does once Neutron's events came
        guest.resume()
        states.append(guest.get_power_state(None))
    out.append({'name': guest.name, 'seconds': time.monotonic() - started,
                'states': states})
print(json.dumps(out))
'''

DESTROY = PRELUDE + '''
import sys
args = json.loads(sys.stdin.read())
CONF.set_override('virt_type', 'qemu', group='libvirt')
CONF.set_override('connection_uri', args['uri'], group='libvirt')
CONF.set_override('instances_path', args['instances_path'])
d = driver.load_compute_driver(fake.FakeVirtAPI(), 'gridcentric.LibvirtDriver')
for uuid in args['uuids']:
    instance = objects.Instance(uuid=uuid, id=1, system_metadata={},
                                flavor=objects.Flavor(name='f', extra_specs={}),
                                numa_topology=None, resources=None, vm_state='active',
                                task_state='deleting', host='here', node='here')
    instance.save = lambda *args, **kwargs: None        # no database here
    d.destroy(None, instance, [], None, destroy_disks=True)
print(json.dumps('destroyed'))
'''


@pytest.mark.usefixtures('libvirtd')
def test_clones_resume_the_blessed_memory_through_the_driver(host: Host) -> None:  # noqa: F811
    import libvirt
    source_uuid = str(uuid.uuid4())
    _, disks = nova_disks(host.work)
    src = host.define(_domain_xml('gc-drv-src', source_uuid, host.work, disks, True))
    token = booted(host, src)
    before = guest.counters(console(host, src))[-1][0]
    live_images = os.path.join(host.work, 'live-images')
    made = bless.bless_domain(source_uuid, 'li-drv', 'demo', os.path.join(live_images, 'li-drv'),
                              120, True, uri=URI)

    clones = []
    instances_path = os.path.join(host.work, 'nova-instances')
    for n in (1, 2):
        name, clone_uuid = 'gc-drv-clone%d' % n, str(uuid.uuid4())
        instance_dir = os.path.join(instances_path, clone_uuid)
        os.makedirs(instance_dir)
        clone_disks = {dev: os.path.join(instance_dir, 'disk.' + dev) for dev in disks}
        for path in clone_disks.values():          # what Nova's _create_image left there
            qemu_img('create', '-q', '-f', 'qcow2', path, '64M')
        clones.append({'name': name, 'uuid': clone_uuid, 'disks': clone_disks,
                       'dir': instance_dir,
                       'xml': _domain_xml(name, clone_uuid, host.work, clone_disks, True)})
    try:
        started = _nova_python(RESUME, timeout=300, stdin=json.dumps({
            'uri': URI, 'live_images': live_images, 'live_image': 'li-drv',
            'project': 'demo', 'memory_mb': made.ram_size >> 20,
            'clones': [{'uuid': c['uuid'], 'xml': c['xml'], 'pause': n == 2}
                       for n, c in enumerate(clones, 1)]}))
        # the second waits paused, state loaded, as while Nova waits for Neutron's
        # network-vif-plugged events, until Nova resumes it
        assert [(c['name'], c['states']) for c in started] == [
            ('gc-drv-clone1', [RUNNING]), ('gc-drv-clone2', [PAUSED, RUNNING])]
        for clone in clones:
            dom = host.conn.lookupByName(clone['name'])
            wait_for(lambda dom=dom: len(guest.counters(console(host, dom))) >= 3, timeout=120,
                     what='%s to count' % clone['name'])
            text = console(host, dom)
            # the source's memory, from where it was blessed: no boot, its boot token
            assert guest.boot_token(text) is None
            assert guest.tokens(text) <= {token}
            assert guest.counters(text)[0][0] > before
            # its disks are its own overlays of the live image's
            for dev, path in clone['disks'].items():
                info = json.loads(qemu_img('info', '-U', '--output=json', path))
                assert (info['format'], info['backing-filename']) == ('qcow2', made.disks[dev])
        # clones map the frozen RAM copy-on-write: it never changes
        assert live.sha256(made.ram_path) == made.ram_sha256

        # QEMU cannot open the RAM (made root's alone here): the build aborts
        # with a fault that names no host path
        clone_uuid = str(uuid.uuid4())
        os.makedirs(os.path.join(instances_path, clone_uuid))
        mode = os.stat(made.ram_path).st_mode
        os.chmod(made.ram_path, 0o400)
        try:
            failed = _nova_python(RESUME, timeout=300, stdin=json.dumps({
                'uri': URI, 'live_images': live_images, 'live_image': 'li-drv',
                'project': 'demo', 'memory_mb': made.ram_size >> 20, 'clones': [{
                    'uuid': clone_uuid, 'pause': False, 'xml': _domain_xml(
                        'gc-drv-clone3', clone_uuid, host.work,
                        {dev: os.path.join(instances_path, clone_uuid, dev) for dev in disks},
                        True)}]}))
        finally:
            os.chmod(made.ram_path, mode)
            with contextlib.suppress(libvirt.libvirtError):
                host.domains.append(host.conn.lookupByName('gc-drv-clone3'))
        assert failed == [{'error': [
            'BuildAbortException', 'Build of instance %s aborted: cannot resume live image '
            'li-drv: QEMU could not start with its memory and disks' % clone_uuid]}]

        # Nova's own destroy of the clones removes their domains and instance
        # directories, and nothing of the live image
        files = sorted(os.listdir(os.path.dirname(made.ram_path)))
        _nova_python(DESTROY, timeout=120, stdin=json.dumps({
            'uri': URI, 'instances_path': instances_path,
            'uuids': [c['uuid'] for c in clones]}))
        for clone in clones:
            assert clone['name'] not in host.conn.listDefinedDomains()
            assert not os.path.exists(clone['dir'])
        assert sorted(os.listdir(os.path.dirname(made.ram_path))) == files
        assert manifest.read(live_images, 'li-drv') == made
        assert live.sha256(made.ram_path) == made.ram_sha256
    finally:
        for clone in clones:
            with contextlib.suppress(libvirt.libvirtError):
                host.domains.append(host.conn.lookupByName(clone['name']))
