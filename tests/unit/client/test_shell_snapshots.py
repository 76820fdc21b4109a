"""``gc-api snapshot-*``, ``attachment-*`` and ``image-cache-*`` against the stand-in."""

import sys

import pytest

from .helpers import assert_one_error_line


@pytest.fixture
def volume(run):
    assert run('backend-create', 'fast', '--driver', 'file').rc == 0
    result = run('--json', 'volume-create', '--size', '1', '--name', 'v1', '--wait')
    assert result.rc == 0, result
    return result.json


def test_snapshot_create_list_show_delete(run, api, volume):
    started = run('--json', 'snapshot-create', 'v1', '--name', 's1')
    assert started.rc == 0 and started.json['status'] == 'creating', started
    done = run('--json', 'snapshot-create', volume['id'], '--name', 's2', '--wait')
    assert (done.json['status'], done.json['volume_id']) == ('available', volume['id'])

    table = run('snapshot-list')
    assert [cell.strip() for cell in table.out.splitlines()[1].split('|')[1:-1]] == [
        'ID', 'Name', 'Volume', 'Status', 'Size', 'Created']
    assert 'Project' in run('snapshot-list', '--all-tenants').out
    assert [s['name'] for s in run('--json', 'snapshot-list', '--volume', 'v1').json] == [
        's1', 's2']
    assert [s['name'] for s in run('--json', 'snapshot-list', '--name', 's2').json] == ['s2']
    assert run('--json', 'snapshot-show', 's2').json['id'] == done.json['id']

    result = run('snapshot-delete', 's1', 's2', '--wait')
    assert (result.rc, result.out, result.err) == (0, '', ''), result
    assert run('--json', 'snapshot-list').json == []


def test_snapshot_wait_spinner_and_errors(run, api, volume, monkeypatch):
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    result = run('snapshot-create', 'v1', '--name', 'snap', '--wait')
    assert result.rc == 0 and '| creating snapshot snap (' in result.err, result
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: False)

    def failing(item, transitional, **outcome):
        item.update(status=transitional, _reads=0,
                    _outcome=dict(status='error', status_reason='disk on fire'))
    monkeypatch.setattr(api, '_start', failing)
    assert_one_error_line(run('snapshot-create', 'v1', '--name', 'bad', '--wait'),
                          'ERROR: Snapshot bad (', 'went to status error: disk on fire')
    assert_one_error_line(run('snapshot-create', 'ghost'),
                          "No volume with a name or ID of 'ghost' exists.")
    assert_one_error_line(run('snapshot-delete', 'snap', 'ghost'),
                          "Unable to delete snapshot(s): ghost: No snapshot with a name or "
                          "ID of 'ghost' exists.")


def test_attachments(run, api, volume):
    created = run('--json', 'attachment-create', 'v1', '--host', 'node2', '--mode', 'ro',
                  '--instance-uuid', '8c2d4fbb-54a5-4bcb-8d2f-34bb4d0c2a3e', '--wait')
    assert created.rc == 0, created
    attachment = created.json
    assert (attachment['status'], attachment['host'], attachment['mode']) == (
        'attached', 'node2', 'ro')
    assert run('--json', 'volume-show', 'v1').json['status'] == 'in-use'
    table = run('attachment-list', '--volume', 'v1')
    assert attachment['id'] in table.out and '/dev/fake0' in table.out
    assert run('--json', 'attachment-show', attachment['id']).json['volume_id'] == volume['id']
    assert_one_error_line(run('attachment-show', 'nope'),
                          "No attachment with an ID of 'nope' exists.")

    result = run('volume-detach', attachment['id'], '--wait')
    assert (result.rc, result.out) == (0, ''), result
    assert run('--json', 'attachment-list').json == []
    assert run('--json', 'volume-show', 'v1').json['status'] == 'available'

    again = run('--json', 'volume-attach', 'v1').json
    assert again['status'] == 'attaching'
    assert_one_error_line(run('attachment-delete', 'nope', again['id'], '--wait'),
                          "Unable to detach: nope: No attachment with an ID of 'nope'")
    assert run('--json', 'attachment-list').json == []


def _entry(api, backend_id, image_id, hits=0):
    entry = {'id': f'entry-{len(api.image_cache)}', 'backend_id': backend_id,
             'host': 'fakehost', 'image_id': image_id, 'image_key': 'k', 'size': 1,
             'status': 'available', 'hits': hits, 'last_used_at': None}
    api.image_cache[entry['id']] = entry
    return entry


def test_image_cache(run, api):
    fast = run('--json', 'backend-create', 'fast', '--driver', 'file').json
    slow = run('--json', 'backend-create', 'slow', '--driver', 'file').json
    one = _entry(api, fast['id'], '/srv/a.qcow2', hits=3)
    _entry(api, slow['id'], '/srv/b.raw')
    _entry(api, slow['id'], '/srv/c.raw')

    table = run('image-cache-list')
    assert [cell.strip() for cell in table.out.splitlines()[1].split('|')[1:-1]] == [
        'ID', 'Image', 'Backend', 'Host', 'Size', 'Status', 'Hits', 'Last used']
    listed = run('--json', 'image-cache-list', '--backend', 'fast').json
    assert [(e['image_id'], e['hits']) for e in listed] == [('/srv/a.qcow2', 3)]

    assert run('image-cache-delete', one['id']).rc == 0
    assert_one_error_line(run('image-cache-delete', one['id']),
                          f"Unable to purge image cache entries: {one['id']}: Image cache "
                          f"entry {one['id']} could not be found. (HTTP 404)")
    assert run('image-cache-purge', '--backend', 'fast').out == (
        'Purged 0 image cache entries.\n')
    assert run('--json', 'image-cache-purge').json == {'purged': 2}
    _entry(api, slow['id'], '/srv/d.raw')
    assert run('image-cache-purge', '--backend', slow['id']).out == (
        'Purged 1 image cache entry.\n')
