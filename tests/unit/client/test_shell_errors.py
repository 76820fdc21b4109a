"""``gc-api`` authentication, exit codes and one-line errors."""

import re
import socket

import pytest

from gridcentric_storage.client import backends, shell

from .helpers import Result, assert_one_error_line

# urllib3's wording; "ECONNREFUSED" once eventlet is imported (as the wider suite does)
REFUSED = re.compile(r'\((Connection refused|ECONNREFUSED)\)')


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


@pytest.fixture
def main(capsys):
    """``main(*argv)`` -> Result, with no auth options added."""
    def _main(*argv: str) -> Result:
        capsys.readouterr()
        rc = shell.main(list(argv))
        out, err = capsys.readouterr()
        return Result(rc, out, err)
    return _main


def test_connection_refused_hint(run):
    endpoint = f'http://127.0.0.1:{_free_port()}'
    result = run('backend-list', endpoint=endpoint)
    assert_one_error_line(result, f'ERROR: The gridcentric API is not reachable at {endpoint} ',
                          '; is gridcentric-api running there?')
    assert REFUSED.search(result.err), result


def test_api_404_on_a_wrong_endpoint(run, api):
    assert_one_error_line(run('backend-list', endpoint=api.url + '/v1'),
                          'ERROR: The resource could not be found. (HTTP 404)')


@pytest.mark.parametrize('argv', [
    [],
    ['no-such-command'],
    ['backend-create', 'x'],                       # --driver missing
    ['backend-top', '--count', '0'],
    ['backend-top', '--interval', 'soon'],
    ['volume-create', '--size', '0'],
    ['volume-create', '--size', '1', '--role', 'scratch'],
    ['backend-list', '--bogus'],
])
def test_usage_errors_exit_2(run, argv):
    result = run(*argv)
    assert result.rc == 2, result
    assert 'usage: gc-api' in result.err and result.out == ''


def test_unknown_auth_type_exits_2(main):
    result = main('--os-auth-type', 'kerberos-ish', 'backend-list')
    assert result.rc == 2 and 'kerberos-ish' in result.err, result


def test_help_and_version_exit_0(main):
    result = main('--help')
    assert result.rc == 0 and 'backend-top' in result.out and 'volume-create' in result.out
    assert main('backend-create', '--help').rc == 0
    version = main('--version')
    assert version.rc == 0 and version.out.startswith('gc-api ')


def test_settings_from_environment(main, api, monkeypatch):
    monkeypatch.setenv('OS_AUTH_TYPE', 'none')
    monkeypatch.setenv('OS_ENDPOINT', api.url)
    assert main('backend-create', 'b', '--driver', 'fake').rc == 0
    assert main('--json', 'backend-list').json[0]['name'] == 'b'


def test_endpoint_override(main, api):
    result = main('--os-auth-type', 'none', '--os-endpoint-override', api.url, 'backend-list')
    assert result.rc == 0, result


def test_noauth_without_endpoint(main):
    assert_one_error_line(main('--os-auth-type', 'none', 'backend-list'),
                          "No endpoint for service type 'gridcentric'", '--os-endpoint')


def test_no_credentials_at_all(main):
    assert_one_error_line(main('backend-list'), 'auth_url', '--os-auth-type none')


def _keystone_args(url, password='secret'):
    return ['--os-auth-url', url + '/identity/v3', '--os-username', 'demo',
            '--os-password', password, '--os-project-name', 'demo',
            '--os-user-domain-id', 'default', '--os-project-domain-id', 'default']


def test_keystone_password_auth_uses_the_catalog(main, api):
    api.keystone = True
    result = main(*_keystone_args(api.url), '--os-region-name', 'RegionOne',
                  '--os-interface', 'internal', '--json', 'backend-list')
    assert result.rc == 0 and result.json == [], result
    assert any(path == '/identity/v3/auth/tokens' for _, path, _ in api.requests)
    assert [h['x-auth-token'] for _, p, h in api.requests if p == '/v1/backends'] == [
        'fake-token']


def test_keystone_wrong_password(main, api):
    api.keystone = True
    assert_one_error_line(main(*_keystone_args(api.url, 'wrong'), 'backend-list'),
                          'requires authentication')


def test_keystone_unreachable(main):
    url = f'http://127.0.0.1:{_free_port()}'
    result = main(*_keystone_args(url), 'backend-list')
    assert_one_error_line(result, f'ERROR: The identity service is not reachable at '
                                  f'{url}/identity/v3 (')
    assert REFUSED.search(result.err), result


def test_unexpected_errors_are_one_line_unless_debug(run, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError('boom\nsecond line')
    monkeypatch.setattr(backends.BackendManager, 'list', boom)
    assert_one_error_line(run('backend-list'), 'ERROR: RuntimeError: boom second line')
    assert 'Traceback' not in run('backend-list').err

    debug = run('--debug', 'backend-list')
    assert debug.rc == 1 and 'Traceback (most recent call last)' in debug.err
    assert debug.err.splitlines()[-1] == 'ERROR: RuntimeError: boom second line'


def test_debug_logs_requests(run):
    result = run('backend-list', '--debug')
    assert result.rc == 0 and 'GET' in result.err and '/v1/backends' in result.err


def test_interrupt_exits_130(run, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(backends.BackendManager, 'list', interrupted)
    result = run('backend-list')
    assert (result.rc, result.err) == (130, 'ERROR: Interrupted\n')
    top = run('backend-top')                       # Ctrl-C is how top normally ends
    assert (top.rc, top.err) == (0, '')
