"""Each state machine has one owner: no other module writes its rows.

Volumes, snapshots and attachments belong to ``volume.api`` and the volume
manager, with the migration workflow they run (``volume.status`` is their
shared, table-checked writer); servers and live images to ``compute.api``
and the host's ``compute.servers`` / ``compute.live_images``
(``compute.status`` likewise); live images of Nova instances to
``nova.api`` and the host's ``compute.nova_live_images``.
"""

import ast
import pathlib

import gridcentric_storage

PACKAGE = pathlib.Path(gridcentric_storage.__file__).parent
# volume/migration.py: the migration workflow that volume.api and the manager run.
VOLUME_SIDE = {'volume/api.py', 'volume/manager.py', 'volume/status.py', 'volume/migration.py'}
COMPUTE_SIDE = {'compute/api.py', 'compute/servers.py', 'compute/live_images.py',
                'compute/status.py'}
LIVE_IMAGE_SIDE = COMPUTE_SIDE | {'nova/api.py', 'compute/nova_live_images.py'}
OWNERS = {
    **{'%s_%s' % (kind, verb): VOLUME_SIDE
       for kind in ('volume', 'snapshot', 'attachment')
       for verb in ('create', 'update', 'destroy')},
    **{'server_%s' % verb: COMPUTE_SIDE for verb in ('create', 'update', 'destroy')},
    **{'live_image_%s' % verb: LIVE_IMAGE_SIDE for verb in ('create', 'update', 'destroy')},
}


def _writes() -> list[tuple[str, str, int]]:
    found = []
    for path in sorted(PACKAGE.rglob('*.py')):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith('db/'):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in OWNERS):
                found.append((module, node.func.attr, node.lineno))
    return found


def test_the_scan_sees_the_owners_writes():
    modules = {module for module, _, _ in _writes()}
    assert {'volume/status.py', 'volume/api.py', 'compute/status.py'} <= modules


def test_only_the_owner_of_a_state_machine_writes_it():
    strangers = ['%s:%d %s' % (module, line, call) for module, call, line in _writes()
                 if module not in OWNERS[call]]
    assert strangers == []


def test_status_moves_go_through_the_table_checked_writers():
    # Outside volume/status.py and compute/status.py an *_update call may set
    # other fields (provider_location, a note) but never the status itself.
    bare = []
    for path in sorted(PACKAGE.rglob('*.py')):
        module = path.relative_to(PACKAGE).as_posix()
        if module.startswith('db/') or module in ('volume/status.py', 'compute/status.py'):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr.endswith('_update') and node.func.attr in OWNERS):
                continue
            values = node.args[1] if len(node.args) > 1 else None
            if isinstance(values, ast.Dict) and any(
                    isinstance(k, ast.Constant) and k.value == 'status' for k in values.keys):
                bare.append('%s:%d' % (module, node.lineno))
    assert bare == []
