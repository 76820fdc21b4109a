"""`gc-api` and the Python client against the real API (not the unit stand-in)."""

import json

import pytest
from keystoneauth1 import noauth, session
from novaclient import exceptions as nova_exc

from gridcentric_storage import client
from tests.fixtures.services import gc_api


def test_cli_backend_and_volume_lifecycle(cloud, tmp_path):
    created = gc_api(cloud, '--json', 'backend-create', 'fast', '--driver', 'file',
                     '--option', 'path=%s' % (tmp_path / 'fast'), '--tag', 'ssd',
                     '--cost', '1')
    assert created.returncode == 0, created.stderr
    backend = json.loads(created.stdout)
    assert backend['status'] == 'up' and backend['options']['path'].endswith('fast')

    listed = gc_api(cloud, 'backend-list')
    assert listed.returncode == 0 and 'fast' in listed.stdout

    volume = gc_api(cloud, '--json', 'volume-create', '--size', '1', '--name', 'v1',
                    '--tag', 'ssd', '--wait')
    assert volume.returncode == 0, volume.stderr
    assert json.loads(volume.stdout)['status'] == 'available'
    assert len(list((tmp_path / 'fast').glob('volume-*'))) == 1

    shown = gc_api(cloud, '--json', 'backend-show', 'fast')
    assert json.loads(shown.stdout)['volume_count'] == 1

    top = gc_api(cloud, 'backend-top', '--count', '1', '--interval', '0.1')
    assert top.returncode == 0 and 'fast' in top.stdout

    busy = gc_api(cloud, 'backend-delete', 'fast')
    assert busy.returncode == 1
    assert busy.stderr.count('\n') == 1 and 'holds 1 volume' in busy.stderr

    assert gc_api(cloud, 'volume-delete', 'v1', '--wait').returncode == 0
    assert list((tmp_path / 'fast').glob('volume-*')) == []
    assert gc_api(cloud, 'backend-disable', 'fast', '--reason', 'gone').returncode == 0
    assert gc_api(cloud, 'backend-delete', 'fast').returncode == 0


def test_cli_errors_are_one_line(cloud):
    for args, text in [(('volume-create', '--size', '1'), 'No valid backend'),
                       (('backend-create', 'x', '--driver', 'nope'), 'Unknown driver'),
                       (('backend-show', 'missing'), 'missing'),
                       (('volume-create', '--size', '1', '--requirements', 'cost >'),
                        'Invalid expression')]:
        result = gc_api(cloud, *args)
        assert result.returncode == 1, (args, result.stdout)
        assert result.stderr.count('\n') == 1 and text in result.stderr, result.stderr
        assert 'Traceback' not in result.stderr
    usage = gc_api(cloud, 'volume-create', '--size', 'ten')
    assert usage.returncode == 2


def test_python_client_as_novaclient_extension(cloud, tmp_path):
    gc = client.get_client(session.Session(auth=noauth.NoAuth(endpoint=cloud.url)))
    backend = gc.gc_backends.create(name='py', driver='file',
                                    options={'path': str(tmp_path / 'py')})
    assert backend.status == 'up'
    volume = gc.gc_volumes.wait(gc.gc_volumes.create(size=1, name='pv'))
    assert volume.status == 'available' and volume.backend_id == backend.id
    with pytest.raises(nova_exc.Conflict) as error:
        gc.gc_backends.delete(backend)
    assert 'holds 1 volume' in str(error.value)
    with pytest.raises(nova_exc.BadRequest):
        gc.gc_volumes.create(size=0)
