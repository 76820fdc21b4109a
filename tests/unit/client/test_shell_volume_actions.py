"""``gc-api volume-*`` sources and actions against the in-memory stand-in."""

import pytest

from .helpers import assert_one_error_line


@pytest.fixture
def volume(run):
    assert run('backend-create', 'fast', '--driver', 'file').rc == 0
    result = run('--json', 'volume-create', '--size', '1', '--name', 'v1', '--wait')
    assert result.rc == 0, result
    return result.json


def _snapshot(run, volume='v1', name='s1'):
    result = run('--json', 'snapshot-create', volume, '--name', name, '--wait')
    assert result.rc == 0, result
    return result.json


def test_volume_create_from_sources_defaults_to_their_size(run, volume):
    snap = _snapshot(run)
    from_snap = run('--json', 'volume-create', '--snapshot', 's1', '--wait').json
    assert (from_snap['snapshot_id'], from_snap['size']) == (snap['id'], 1)
    clone = run('--json', 'volume-create', '--source-volume', 'v1', '--size', '3',
                '--multiattach').json
    assert (clone['source_volid'], clone['size'], clone['multiattach']) == (
        volume['id'], 3, True)
    image = run('--json', 'volume-create', '--image', '/srv/images/cirros.qcow2').json
    assert (image['image_id'], image['size']) == ('/srv/images/cirros.qcow2', 1)


@pytest.mark.parametrize('argv, message', [
    (['--name', 'x'], '--size is required unless --snapshot, --source-volume or --image'),
    (['--snapshot', 's1', '--image', '/x.img'],
     'Give at most one of --snapshot, --source-volume and --image, not --snapshot and '
     '--image.'),
    (['--source-volume', 'nope'], "No volume with a name or ID of 'nope' exists."),
    (['--snapshot', 'nope'], "No snapshot with a name or ID of 'nope' exists."),
])
def test_volume_create_bad_sources(run, api, volume, argv, message):
    posts = len([r for r in api.requests if r[:2] == ('POST', '/v1/volumes')])
    assert_one_error_line(run('volume-create', *argv), message)
    assert len([r for r in api.requests if r[:2] == ('POST', '/v1/volumes')]) == posts


def test_volume_delete_cascade_and_force(run, api, volume):
    _snapshot(run)
    assert_one_error_line(run('volume-delete', 'v1'), 'has snapshots')
    result = run('volume-delete', 'v1', '--cascade', '--force', '--wait')
    assert result.rc == 0, result
    assert api.deletes[-1] == (volume['id'], {'cascade': ['true'], 'force': ['true']})
    assert api.deletes[0] == (volume['id'], {})


def test_volume_extend(run, api, volume):
    started = run('--json', 'volume-extend', 'v1', '2')
    assert started.rc == 0 and started.json['status'] == 'extending', started
    assert run('--json', 'volume-show', 'v1').json['size'] == 2
    done = run('--json', 'volume-extend', 'v1', '5', '--wait')
    assert (done.json['size'], done.json['status']) == (5, 'available')
    assert_one_error_line(run('volume-extend', 'v1', '4'), 'volumes cannot shrink',
                          '(HTTP 400)')
    assert run('volume-extend', 'v1', '0').rc == 2


def test_volume_extend_wait_reports_a_failed_extend(run, api, volume, monkeypatch):
    def failing(item, transitional, **outcome):
        item.update(status=transitional, _reads=0,
                    _outcome=dict(status='available', status_reason='extend failed: full'))
    monkeypatch.setattr(api, '_start', failing)
    result = run('volume-extend', 'v1', '2', '--wait')
    assert_one_error_line(result, f"ERROR: Volume v1 ({volume['id']}): extend failed: full")


def test_volume_revert(run, api, volume):
    snap = _snapshot(run)
    result = run('--json', 'volume-revert', 'v1', 's1', '--wait')
    assert result.rc == 0 and result.json['status'] == 'available', result
    run('volume-create', '--size', '1', '--name', 'other', '--wait')
    assert_one_error_line(run('volume-revert', 'other', snap['id']),
                          f"snapshot {snap['id']} belongs to volume {volume['id']}")
    assert_one_error_line(run('volume-revert', 'v1', 'nope'),
                          "No snapshot with a name or ID of 'nope' exists.")


def test_volume_force_detach(run, api, volume):
    attachment = run('--json', 'attachment-create', 'v1', '--wait').json
    api.settle_after = 1
    result = run('volume-force-detach', 'v1', '--attachment', attachment['id'])
    assert result.rc == 0 and result.out == '', result
    assert run('--json', 'attachment-list').json == []
    assert run('--json', 'volume-show', 'v1').json['status'] == 'available'


def test_volume_upload_to_image(run, api, volume):
    api.settle_after = 1        # settled by the next command's lookup
    started = run('--json', 'volume-upload-to-image', 'v1', 'backup')
    assert started.rc == 0, started
    assert started.json['image_id'] == '/var/lib/gridcentric/images/backup.raw'
    assert started.json['status'] == 'uploading'
    done = run('volume-upload-to-image', 'v1', 'b2', '--disk-format', 'qcow2', '--wait')
    assert done.rc == 0, done
    assert '/var/lib/gridcentric/images/b2.qcow2' in done.out
    assert '| status      | available' in done.out
    assert run('volume-upload-to-image', 'v1', 'b3', '--disk-format', 'vmdk').rc == 2
