"""``gc-api volume-download`` / ``volume-upload`` against the in-memory stand-in.

The stand-in's "GiB" is ``api.gib`` bytes, and so is the client's here.
"""

import io
import os
import sys

import pytest

from gridcentric_storage.client import shell, utils, volumes

from .helpers import assert_one_error_line


@pytest.fixture(autouse=True)
def small_gib(api, monkeypatch):
    monkeypatch.setattr(volumes, 'GiB', api.gib)


@pytest.fixture
def volume(run):
    assert run('backend-create', 'fast', '--driver', 'file').rc == 0
    result = run('--json', 'volume-create', '--size', '2', '--name', 'v1', '--wait')
    assert result.rc == 0, result
    return result.json


def _puts(api):
    return [h for m, p, h in api.requests if m == 'PUT' and p.endswith('/data')]


def test_download_to_a_file(run, api, volume, tmp_path):
    api.data[volume['id']] = b'hello'
    target = tmp_path / 'v1.raw'
    result = run('volume-download', 'v1', '--file', str(target))
    assert (result.rc, result.out, result.err) == (0, '', ''), result
    assert target.read_bytes() == b'hello' + bytes(2 * api.gib - 5)


def test_download_to_stdout(gc, api, capsysbinary):
    gc.gc_backends.create(name='fast', driver='file')
    volume = gc.gc_volumes.wait(gc.gc_volumes.create(2))
    api.data[volume.id] = b'\x00\xffdata'
    rc = shell.main(['--os-auth-type', 'none', '--os-endpoint', api.url,
                     'volume-download', volume.id])
    out, err = capsysbinary.readouterr()
    assert (rc, err) == (0, b'')
    assert out == b'\x00\xffdata' + bytes(2 * api.gib - 6)


def test_download_refuses_a_terminal(run, api, volume, monkeypatch):
    monkeypatch.setattr(sys.stdout, 'isatty', lambda: True)
    assert_one_error_line(run('volume-download', 'v1'),
                          'ERROR: Refusing to write binary data to a terminal; redirect '
                          'stdout or use --file FILE.')
    assert not [p for _, p, _ in api.requests if p.endswith('/data')]


def test_download_progress_bar_on_a_tty(run, volume, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    result = run('volume-download', 'v1', '--file', str(tmp_path / 'out'))
    assert result.rc == 0, result
    assert result.err.startswith('\r\033[Kdownloading v1 (')
    assert '[########################] 100%  2.0 KiB / 2.0 KiB' in result.err
    assert 'MB/s' in result.err and result.err.endswith('\n')


def test_download_errors_leave_no_file(run, api, volume, tmp_path):
    target = tmp_path / 'out'
    assert_one_error_line(run('volume-download', 'ghost', '--file', str(target)),
                          "No volume with a name or ID of 'ghost' exists.")
    run('--json', 'attachment-create', 'v1', '--wait')     # in-use: 409
    assert_one_error_line(run('volume-download', 'v1', '--file', str(target)), '(HTTP 409)')
    assert not target.exists()


def test_upload_a_file_with_its_length(run, api, volume, tmp_path):
    source = tmp_path / 'in'
    source.write_bytes(b'x' * 1500)
    result = run('--json', 'volume-upload', 'v1', '--file', str(source))
    assert result.rc == 0, result
    assert result.json == {'id': volume['id'], 'bytes_written': 1500}
    assert api.data[volume['id']] == b'x' * 1500
    headers = _puts(api)[-1]
    assert headers['content-length'] == '1500' and 'transfer-encoding' not in headers
    assert headers['content-type'] == 'application/octet-stream'


def _stdin_pipe(monkeypatch, data: bytes) -> None:
    read, write = os.pipe()
    os.write(write, data)
    os.close(write)
    monkeypatch.setattr(sys, 'stdin', os.fdopen(read, 'r'))


def test_upload_from_a_pipe_is_spooled(run, api, volume, monkeypatch):
    _stdin_pipe(monkeypatch, b'piped' * 100)
    result = run('--json', 'volume-upload', 'v1')
    assert result.rc == 0 and result.json['bytes_written'] == 500, result
    assert api.data[volume['id']] == b'piped' * 100
    assert _puts(api)[-1]['content-length'] == '500'


def test_upload_from_stdin_redirected_from_a_file(run, api, volume, tmp_path, monkeypatch):
    source = tmp_path / 'in'
    source.write_bytes(b'abc' * 100)
    monkeypatch.setattr(sys, 'stdin', open(source))

    def no_spooling(*args, **kwargs):
        raise AssertionError('a regular file must not be spooled')
    monkeypatch.setattr(volumes.tempfile, 'TemporaryFile', no_spooling)
    result = run('--json', 'volume-upload', 'v1')
    sys.stdin.close()
    assert result.rc == 0 and result.json['bytes_written'] == 300, result


def test_upload_refusals(run, api, volume, tmp_path, monkeypatch):
    monkeypatch.setattr(sys.stdin, 'isatty', lambda: True, raising=False)
    assert_one_error_line(run('volume-upload', 'v1'),
                          'Give --file FILE, or redirect stdin from a file or a pipe.')
    assert_one_error_line(run('volume-upload', 'v1', '--file', str(tmp_path / 'absent')),
                          f"Cannot read {tmp_path / 'absent'}: No such file or directory")
    big = tmp_path / 'big'
    big.write_bytes(bytes(2 * api.gib + 1))
    assert_one_error_line(run('volume-upload', 'v1', '--file', str(big)),
                          f'The input ({2 * api.gib + 1} bytes) is larger than the volume '
                          '(2 GiB).')
    _stdin_pipe(monkeypatch, bytes(2 * api.gib + 1))
    assert_one_error_line(run('volume-upload', 'v1'),
                          'The input is larger than the volume (2 GiB).')
    assert _puts(api) == []


def test_upload_progress_bar_on_a_tty(run, api, volume, monkeypatch):
    _stdin_pipe(monkeypatch, b'z' * 1024)
    monkeypatch.setattr(sys.stderr, 'isatty', lambda: True)
    result = run('--json', 'volume-upload', 'v1')
    assert result.rc == 0, result
    lines = result.err.split('\n')
    assert lines[0].startswith('\r\033[Kreading stdin: ') and '1.0 KiB' in lines[0]
    assert lines[1].startswith('\r\033[Kuploading to v1 (')
    assert '100%  1.0 KiB / 1.0 KiB' in lines[1] and lines[2] == ''


def test_python_api_streams(gc, api, volume):
    assert gc.gc_volumes.upload(volume['id'], b'bytes') == {
        'id': volume['id'], 'bytes_written': 5}
    assert gc.gc_volumes.upload(volume['id'], io.BytesIO(b'0123456789'), 4) == {
        'id': volume['id'], 'bytes_written': 4}
    assert api.data[volume['id']] == b'0123s'
    out, seen = io.BytesIO(), []
    assert gc.gc_volumes.download(volume['id'], out, progress=seen.append) == 2 * api.gib
    assert out.getvalue().startswith(b'0123s\0') and seen[-1] == 2 * api.gib
    with pytest.raises(TypeError, match='length'):
        gc.gc_volumes.upload(volume['id'], io.BytesIO(b'x'))
    with pytest.raises(utils.ClientError, match='The input ended after 2 of 5 bytes'):
        gc.gc_volumes.upload(volume['id'], io.BytesIO(b'ab'), 5)


def test_transfer_progress_line():
    progress = utils.TransferProgress('copying', 4 * 1024 * 1024)
    progress.count = 1024 * 1024
    line = progress.line(progress.started + 1)
    assert line == 'copying: [######------------------]  25%  1.0 MiB / 4.0 MiB  1.0 MB/s'
    unknown = utils.TransferProgress('reading stdin')
    unknown.count = 512
    assert unknown.line(unknown.started + 1) == 'reading stdin: 512 B  0.0 MB/s'


def test_streams_use_the_catalog_endpoint_and_token(api, volume):
    from keystoneauth1 import identity, session

    from gridcentric_storage import client
    api.keystone = True
    auth = identity.v3.Password(auth_url=api.url + '/identity/v3', username='demo',
                                password='secret', project_name='demo',
                                user_domain_id='default', project_domain_id='default')
    gc = client.get_client(session.Session(auth=auth))
    assert gc.gc_volumes.upload(volume['id'], b'secret data')['bytes_written'] == 11
    out = io.BytesIO()
    gc.gc_volumes.download(volume['id'], out)
    assert out.getvalue().startswith(b'secret data\0')
    streams = [h for _, p, h in api.requests if p.endswith('/data')]
    assert len(streams) == 2 and all(h['x-auth-token'] == 'fake-token' for h in streams)


class _Recording(io.BytesIO):
    """A file that remembers the size of each read and write made on it."""

    def __init__(self, data: bytes = b'') -> None:
        super().__init__(data)
        self.reads: list[int] = []
        self.writes: list[int] = []

    def read(self, size: int | None = -1) -> bytes:
        chunk = super().read(size)
        self.reads.append(len(chunk))
        return chunk

    def write(self, data) -> int:
        self.writes.append(len(data))
        return super().write(data)


def test_large_streams_move_in_large_blocks(gc, api, monkeypatch):
    """A volume's bytes are read from and written to the user's file in blocks of
    MiBs, not in the HTTP libraries' 8-16 KiB ones (one system call and Python
    round each: a multi-GiB stream would pay for hundreds of thousands)."""
    MiB = 1 << 20
    monkeypatch.setattr(api, 'gib', 8 * MiB)
    monkeypatch.setattr(volumes, 'GiB', 8 * MiB)
    gc.gc_backends.create(name='fast', driver='file')
    volume = gc.gc_volumes.wait(gc.gc_volumes.create(2))
    data = os.urandom(9 * MiB + 5)
    source = _Recording(data)
    assert gc.gc_volumes.upload(volume, source, len(data))['bytes_written'] == len(data)
    assert api.data[volume.id] == data
    assert min(n for n in source.reads[:-1] if n) >= MiB, source.reads

    out = _Recording()
    assert gc.gc_volumes.download(volume, out) == 16 * MiB
    assert out.getvalue() == data + bytes(16 * MiB - len(data))
    assert min(out.writes[:-1]) >= MiB, out.writes
