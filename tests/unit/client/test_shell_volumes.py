"""``gc-api volume-*`` against the in-memory stand-in."""

import sys

from .helpers import assert_one_error_line


def _backend(run, name='fast', *extra):
    result = run('--json', 'backend-create', name, '--driver', 'file', *extra)
    assert result.rc == 0, result
    return result.json


def test_volume_create_without_wait_returns_creating(run):
    _backend(run)
    result = run('--json', 'volume-create', '--size', '1', '--name', 'v1')
    assert result.rc == 0, result
    assert (result.json['status'], result.json['size'], result.json['name']) == (
        'creating', 1, 'v1')


def test_volume_create_wait_reaches_available(run, api):
    api.settle_after = 4
    fast = _backend(run, 'fast', '--tag', 'ssd')
    result = run('--json', 'volume-create', '--size', '2', '--name', 'v1', '--tag', 'ssd',
                 '--wait', '--requirements', 'free_capacity_gb > 1', '--rank=-cost')
    assert result.rc == 0, result
    assert result.err == ''                    # no spinner: stderr is not a tty
    assert (result.json['status'], result.json['backend_id']) == ('available', fast['id'])
    volume_gets = [p for m, p, _ in api.requests if m == 'GET' and p.startswith('/v1/volumes/')]
    assert len(volume_gets) == 4
    posted = [h for m, p, h in api.requests if (m, p) == ('POST', '/v1/volumes')]
    assert posted


def test_volume_create_wait_reaching_error_exits_1_with_reason(run):
    _backend(run, 'fast', '--tag', 'ssd')
    result = run('volume-create', '--size', '1', '--name', 'gold', '--tag', 'gold', '--wait')
    assert_one_error_line(result, 'went to status error',
                          "No valid backend was found: no enabled backend with tags ['gold']")
    assert result.out == ''


def test_volume_create_wait_timeout(run, api):
    api.settle_after = 10 ** 6
    _backend(run)
    result = run('volume-create', '--size', '1', '--wait', '--timeout', '0.05')
    assert_one_error_line(result, 'Timed out after', '(status: creating)')


def test_volume_create_wait_draws_progress_on_a_tty(run, monkeypatch):
    _backend(run)
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    result = run('volume-create', '--size', '1', '--name', 'v1', '--wait')
    assert result.rc == 0, result
    assert '\r\033[K| creating volume v1 (' in result.err and ': creating (0s)' in result.err
    assert result.err.endswith('\r\033[K')     # the progress line is erased at the end
    assert '| status ' in result.out and 'available' in result.out


def test_volume_create_on_named_backend(run):
    _backend(run, 'cheap', '--cost', '0')
    chosen = _backend(run, 'dear', '--cost', '9')
    result = run('--json', 'volume-create', '--size', '1', '--backend', 'dear', '--wait')
    assert result.json['backend_id'] == chosen['id']
    assert_one_error_line(run('volume-create', '--size', '1', '--backend', 'nope'),
                          "No backend with a name or ID of 'nope' exists.")


def test_volume_list_show_and_filters(run):
    fast, slow = _backend(run, 'fast', '--cost', '0'), _backend(run, 'slow', '--cost', '1')
    v1 = run('--json', 'volume-create', '--size', '1', '--name', 'v1', '--wait').json
    run('--json', 'volume-create', '--size', '1', '--name', 'v2', '--backend', slow['id'],
        '--wait')
    table = run('volume-list')
    assert table.rc == 0, table
    assert [cell.strip() for cell in table.out.splitlines()[1].split('|')[1:-1]] == [
        'ID', 'Name', 'Status', 'Size', 'Backend', 'Tags']
    assert 'Project' not in table.out
    assert 'Project' in run('volume-list', '--all-tenants').out
    assert [v['name'] for v in run('--json', 'volume-list', '--backend', 'fast').json] == ['v1']
    assert [v['name'] for v in run('--json', 'volume-list', '--backend', slow['id']).json] == [
        'v2']
    assert [v['name'] for v in run('--json', 'volume-list', '--status', 'available',
                                   '--limit', '1').json] == ['v1']
    assert run('--json', 'volume-show', 'v1').json['id'] == v1['id']
    assert run('--json', 'volume-show', v1['id']).json['backend_id'] == fast['id']


def test_volume_show_ambiguous_name(run):
    _backend(run)
    for _ in range(2):
        run('volume-create', '--size', '1', '--name', 'twin')
    assert_one_error_line(run('volume-show', 'twin'),
                          "ERROR: Multiple volume matches found for 'twin', use an ID")


def test_volume_delete_wait_until_gone(run):
    _backend(run)
    for name in ('a', 'b'):
        assert run('volume-create', '--size', '1', '--name', name, '--wait').rc == 0
    result = run('volume-delete', 'a', 'b', '--wait')
    assert result.rc == 0 and result.out == '' and result.err == '', result
    assert run('--json', 'volume-list').json == []


def test_volume_delete_reports_failures_on_one_line(run, api):
    _backend(run)
    run('volume-create', '--size', '1', '--name', 'ok', '--wait')
    api.settle_after = 10 ** 6
    run('volume-create', '--size', '1', '--name', 'busy')      # stays 'creating'
    result = run('volume-delete', 'ok', 'ghost', 'busy')
    assert_one_error_line(result, 'Unable to delete volume(s):', "'ghost'",
                          'it can be deleted when available or in error (HTTP 409)')
    listed = run('--json', 'volume-list').json
    assert {v['name']: v['status'] for v in listed} == {'ok': 'deleting', 'busy': 'creating'}
