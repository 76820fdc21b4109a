"""``gc-api backend-*`` against the in-memory stand-in."""

import sys

from .helpers import assert_one_error_line


def _create(run, name='fast', *extra):
    result = run('--json', 'backend-create', name, '--driver', 'file', *extra)
    assert result.rc == 0, result
    return result.json


def test_backend_create_parses_options_and_prints_a_table(run):
    result = run('backend-create', 'fast', '--driver', 'file', '--option', 'path=/srv/fast',
                 '--option', 'size_gb=10', '--option', 'thin=true', '--option', 'password=pw',
                 '--option', 'pools=["a", "b"]', '--tag', 'ssd', '--tag', 'local',
                 '--cost', '1', '--role', 'repository', '--availability-zone', 'az1',
                 '--host', 'node1', '--max-over-subscription-ratio', '2.5',
                 '--reserved-percentage', '5')
    assert result.rc == 0 and result.err == '', result
    lines = result.out.splitlines()
    assert lines[1].split() == ['|', 'Property', '|', 'Value', '|']
    assert any(line.split() == ['|', 'tags', '|', 'ssd,', 'local', '|'] for line in lines)

    shown = run('--json', 'backend-show', 'fast').json
    assert shown['options'] == {'path': '/srv/fast', 'size_gb': 10, 'thin': True,
                                'password': '***', 'pools': ['a', 'b']}
    assert (shown['role'], shown['cost'], shown['availability_zone'], shown['host']) == (
        'repository', 1, 'az1', 'node1')
    assert (shown['max_over_subscription_ratio'], shown['reserved_percentage']) == (2.5, 5)


def test_backend_list_table_json_and_filters(run):
    fast = _create(run, 'fast', '--tag', 'ssd')
    _create(run, 'slow', '--tag', 'hdd')
    table = run('backend-list')
    assert table.rc == 0, table
    header = table.out.splitlines()[1]
    for column in ('ID', 'Name', 'Driver', 'State', 'Status', 'Free GiB', 'Volumes'):
        assert column in header
    assert fast['id'] in table.out and 'slow' in table.out

    listed = run('backend-list', '--tag', 'ssd', '--json')   # --json after the command too
    assert [b['name'] for b in listed.json] == ['fast']
    assert [b['name'] for b in run('--json', 'backend-list', '--limit', '1').json] == ['fast']
    assert run('--json', 'backend-list', '--state', 'disabled').json == []


def test_backend_show_by_name_and_id(run):
    fast = _create(run)
    assert run('--json', 'backend-show', 'fast').json['id'] == fast['id']
    assert run('--json', 'backend-show', fast['id']).json['name'] == 'fast'
    assert_one_error_line(run('backend-show', 'nope'),
                          "No backend with a name or ID of 'nope' exists.")


def test_backend_update(run):
    _create(run, 'fast', '--option', 'path=/a')
    result = run('--json', 'backend-update', 'fast', '--name', 'quick', '--cost', '7',
                 '--tag', 'a', '--tag', 'b', '--option', 'path=/b')
    assert result.rc == 0, result
    assert (result.json['name'], result.json['cost'], result.json['tags'],
            result.json['options']) == ('quick', 7, ['a', 'b'], {'path': '/b'})
    assert_one_error_line(run('backend-update', 'quick'), 'Nothing to update')
    assert_one_error_line(run('backend-update', 'quick', '--option', 'novalue'),
                          "--option 'novalue' is not of the form KEY=VALUE.")


def test_backend_disable_enable(run):
    _create(run)
    disabled = run('--json', 'backend-disable', 'fast', '--reason', 'disk swap').json
    assert (disabled['state'], disabled['disabled_reason']) == ('disabled', 'disk swap')
    enabled = run('--json', 'backend-enable', 'fast').json
    assert (enabled['state'], enabled['disabled_reason']) == ('enabled', None)


def test_backend_delete_many_reports_failures_on_one_line(run):
    a, b = _create(run, 'a'), _create(run, 'b')
    assert run('backend-delete', 'a', b['id']).rc == 0
    assert run('--json', 'backend-list').json == []

    _create(run, 'c')
    _create(run, 'd')
    result = run('backend-delete', 'c', 'missing', a['id'], 'd')
    assert_one_error_line(result, 'Unable to delete backend(s):', "'missing'", a['id'])
    assert run('--json', 'backend-list').json == []


def test_backend_delete_conflict_shows_api_message(run):
    _create(run)
    assert run('volume-create', '--size', '2', '--wait').rc == 0
    result = run('backend-delete', 'fast')
    assert_one_error_line(result, 'fast: Backend fast still holds 1 volume(s); delete or '
                                  'migrate them first. (HTTP 409)')


def test_backend_create_api_errors(run):
    _create(run)
    assert_one_error_line(run('backend-create', 'fast', '--driver', 'file'),
                          "ERROR: Backend with name 'fast' already exists (HTTP 409)")
    assert_one_error_line(run('backend-create', 'x', '--driver', 'floppy'),
                          'ERROR: Unknown driver floppy; available:', '(HTTP 400)')


def test_backend_top_prints_count_tables(run):
    _create(run, 'fast', '--cost', '1')
    _create(run, 'slow', '--cost', '5')
    assert run('volume-create', '--size', '25', '--wait').rc == 0
    result = run('backend-top', '--count', '2', '--interval', '0')
    assert result.rc == 0, result
    assert result.out.count('backends: 2 (2 up)') == 2
    assert result.out.count('| Name ') == 2
    assert '\033[2J' not in result.out          # not a tty: plain tables
    rows = [line.split('|') for line in result.out.splitlines() if '| fast ' in line]
    assert len(rows) == 2
    assert [cell.strip() for cell in rows[0][1:-1]] == [
        'fast', 'enabled', 'up', 'san', '1', '25/100 (25%)', '25', '1']


def test_backend_top_clears_a_tty_and_emits_json(run, monkeypatch):
    _create(run)
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True)
    result = run('backend-top', '--count', '3', '--interval', '0')
    assert result.rc == 0 and result.out.count('\033[H\033[2J') == 3, result
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: False)
    as_json = run('--json', 'backend-top', '--count', '2', '--interval', '0')
    assert as_json.rc == 0 and as_json.out.count('"name": "fast"') == 2
