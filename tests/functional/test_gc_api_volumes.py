"""`gc-api` snapshots, clones, actions, streams, attachments and the image cache,
against the real API in-process with a ``file`` backend in tmp_path.

Every command runs as a subprocess (``OS_AUTH_TYPE=none OS_ENDPOINT=<cloud.url>``),
so stdin, stdout and stderr are real files, pipes and (for the progress bar and the
refusal to write binary data to a terminal) pseudo-terminals.
"""

import json
import os
import pty
import subprocess
import threading

import pytest
from keystoneauth1 import noauth, session

from gridcentric_storage import client
from tests.fixtures.images import store_file
from tests.fixtures.services import gc_api

MiB = 1 << 20
GiB = 1 << 30


def ok(cloud, *args: str, **kwargs):
    """Run gc-api --json ...; expect success; the parsed output."""
    result = gc_api(cloud, '--json', *args, **kwargs)
    assert result.returncode == 0, (args, result.stderr)
    return json.loads(result.stdout)


def fails(cloud, *args: str, **kwargs) -> str:
    """Run gc-api; expect exit 1 with one ERROR line; that line."""
    result = gc_api(cloud, *args, **kwargs)
    assert result.returncode == 1, (args, result.stdout)
    assert result.stderr.startswith('ERROR: ') and result.stderr.count('\n') == 1, \
        result.stderr
    assert 'Traceback' not in result.stderr
    return result.stderr


@pytest.fixture
def backend(cloud, tmp_path):
    return ok(cloud, 'backend-create', 'files', '--driver', 'file',
              '--option', 'path=%s' % (tmp_path / 'files'))


def head(path, length: int) -> bytes:
    with open(path, 'rb') as f:
        return f.read(length)


def download(cloud, volume: str, path) -> bytes:
    """volume-download --file; check the size; return the first 4 MiB."""
    result = gc_api(cloud, 'volume-download', volume, '--file', str(path))
    assert result.returncode == 0 and result.stderr == '', result.stderr
    assert os.path.getsize(path) == ok(cloud, 'volume-show', volume)['size'] * GiB
    return head(path, 4 * MiB)


def test_streams_snapshots_clones_revert_extend(cloud, backend, tmp_path):
    volume = ok(cloud, 'volume-create', '--size', '1', '--name', 'src', '--wait')
    assert volume['status'] == 'available'

    first = os.urandom(2 * MiB)
    (tmp_path / 'first.bin').write_bytes(first)
    written = ok(cloud, 'volume-upload', 'src', '--file', str(tmp_path / 'first.bin'))
    assert written == {'id': volume['id'], 'bytes_written': 2 * MiB}

    snap = ok(cloud, 'snapshot-create', 'src', '--name', 'before', '--wait')
    assert (snap['status'], snap['volume_id'], snap['size']) == ('available', volume['id'], 1)
    assert [s['id'] for s in ok(cloud, 'snapshot-list', '--volume', 'src')] == [snap['id']]
    assert ok(cloud, 'snapshot-show', 'before')['id'] == snap['id']

    # from a pipe: spooled, then sent with a Content-Length
    piped = gc_api(cloud, '--json', 'volume-upload', 'src', input=b'\xee' * MiB)
    assert piped.returncode == 0, piped.stderr
    assert json.loads(piped.stdout)['bytes_written'] == MiB
    # to stdout redirected to a file
    with open(tmp_path / 'stdout.raw', 'wb') as out:
        assert gc_api(cloud, 'volume-download', 'src', stdout=out).returncode == 0
    assert os.path.getsize(tmp_path / 'stdout.raw') == GiB
    assert head(tmp_path / 'stdout.raw', 2 * MiB) == b'\xee' * MiB + first[MiB:]

    from_snap = ok(cloud, 'volume-create', '--snapshot', 'before', '--name', 'from-snap',
                   '--wait')
    assert (from_snap['size'], from_snap['snapshot_id']) == (1, snap['id'])
    clone = ok(cloud, 'volume-create', '--source-volume', 'src', '--size', '2', '--wait')
    assert (clone['size'], clone['source_volid'], clone['status']) == (
        2, volume['id'], 'available')

    reverted = ok(cloud, 'volume-revert', 'src', 'before', '--wait')
    assert reverted['status'] == 'available'
    data = download(cloud, 'src', tmp_path / 'reverted.raw')
    assert data[:2 * MiB] == first and data[2 * MiB:3 * MiB] == bytes(MiB)
    assert download(cloud, 'from-snap', tmp_path / 'snap.raw')[:2 * MiB] == first

    extended = ok(cloud, 'volume-extend', 'src', '2', '--wait')
    assert (extended['size'], extended['status']) == (2, 'available')

    # stdin redirected from a regular file: its size, no spooling
    with open(tmp_path / 'first.bin', 'rb') as stdin:
        assert ok(cloud, 'volume-upload', clone['id'], stdin=stdin)['bytes_written'] == \
            2 * MiB

    assert 'it has 1 snapshot(s)' in fails(cloud, 'volume-delete', 'src')
    assert gc_api(cloud, 'volume-delete', 'src', '--cascade', '--wait').returncode == 0
    assert ok(cloud, 'snapshot-list') == []


def _read_all(fd: int, chunks: list) -> None:
    while True:
        try:
            data = os.read(fd, 65536)
        except OSError:   # EIO once the other side is closed
            return
        if not data:
            return
        chunks.append(data)


def test_progress_bar_only_on_a_tty_and_no_binary_to_a_terminal(cloud, backend, tmp_path):
    ok(cloud, 'volume-create', '--size', '1', '--name', 'v', '--wait')
    (tmp_path / 'in.bin').write_bytes(os.urandom(8 * MiB))
    master, slave = pty.openpty()
    chunks: list = []
    reader = threading.Thread(target=_read_all, args=(master, chunks))
    reader.start()
    try:
        result = gc_api(cloud, 'volume-upload', 'v', '--file', str(tmp_path / 'in.bin'),
                        stderr=slave)
        refused = gc_api(cloud, 'volume-download', 'v', stdout=slave)
    finally:
        os.close(slave)
        reader.join(timeout=30)
        os.close(master)
    assert result.returncode == 0
    terminal = b''.join(chunks).decode()
    assert 'uploading to v (' in terminal and '100%' in terminal and 'MB/s' in terminal
    assert '8.0 MiB / 8.0 MiB' in terminal
    assert refused.returncode == 1
    assert refused.stderr == ('ERROR: Refusing to write binary data to a terminal; redirect '
                              'stdout or use --file FILE.\n')


def test_attach_detach(cloud, backend):
    volume = ok(cloud, 'volume-create', '--size', '1', '--name', 'a', '--wait')
    attachment = ok(cloud, 'attachment-create', 'a', '--mode', 'rw', '--wait')
    assert (attachment['status'], attachment['volume_id']) == ('attached', volume['id'])
    assert attachment['device_path']
    assert ok(cloud, 'volume-show', 'a')['status'] == 'in-use'
    assert [a['id'] for a in ok(cloud, 'attachment-list', '--volume', 'a')] == [
        attachment['id']]
    assert ok(cloud, 'attachment-show', attachment['id'])['host'] == 'test-host'

    assert gc_api(cloud, 'volume-detach', attachment['id'], '--wait').returncode == 0
    assert ok(cloud, 'attachment-list') == []
    assert ok(cloud, 'volume-show', 'a')['status'] == 'available'

    again = ok(cloud, 'volume-attach', 'a', '--wait')
    assert 'detach it first' in fails(cloud, 'volume-delete', 'a')
    assert gc_api(cloud, 'volume-delete', 'a', '--force', '--wait').returncode == 0
    assert "No attachment with an ID of '%s'" % again['id'] in fails(
        cloud, 'attachment-show', again['id'])


def _qcow2(tmp_path, payload: bytes) -> str:
    """A qcow2 image in the public image store; returns its name."""
    raw, image = tmp_path / 'img.raw', store_file('img.qcow2')
    with open(raw, 'wb') as f:
        f.write(payload)
        f.truncate(64 * MiB)
    subprocess.run(['qemu-img', 'convert', '-f', 'raw', '-O', 'qcow2', str(raw), image],
                   check=True)
    return 'img.qcow2'


def test_images_and_the_image_cache(cloud, backend, tmp_path, gc_conf):
    payload = os.urandom(MiB)
    image = _qcow2(tmp_path, payload)
    made = [ok(cloud, 'volume-create', '--image', image, '--name', 'img%d' % i, '--wait')
            for i in range(2)]
    assert all((v['size'], v['image_id'], v['status']) == (1, image, 'available')
               for v in made)
    cache = ok(cloud, 'image-cache-list', '--backend', 'files')
    assert len(cache) == 1 and (cache[0]['image_id'], cache[0]['hits']) == (image, 1)
    table = gc_api(cloud, 'image-cache-list')
    assert table.returncode == 0 and image in table.stdout and 'Hits' in table.stdout

    written = ok(cloud, 'volume-upload-to-image', 'img0', 'copy', '--disk-format', 'qcow2',
                 '--wait')
    assert (written['disk_format'], written['status']) == ('qcow2', 'available')
    assert written['image_id'] == 'copy'  # a name of the admin project's images
    assert os.path.isfile(os.path.join(gc_conf.image.store_path, 'projects', 'admin', 'copy'))
    assert 'project admin already has an image named copy' in fails(
        cloud, 'volume-upload-to-image', 'img0', 'copy')
    plain = gc_api(cloud, 'volume-upload-to-image', 'img0', 'copy2', '--wait')
    assert plain.returncode == 0 and 'copy2' in plain.stdout
    copy = ok(cloud, 'volume-create', '--image', written['image_id'], '--wait')
    # image -> img0 -> copy.qcow2 -> copy: the bytes made it through
    assert download(cloud, copy['id'], tmp_path / 'copy.raw')[:MiB] == payload

    cache = ok(cloud, 'image-cache-list')
    assert sorted(e['image_id'] for e in cache) == sorted([image, written['image_id']])
    copy_entry = next(e for e in cache if e['image_id'] == written['image_id'])
    deleted = gc_api(cloud, 'image-cache-delete', copy_entry['id'])
    assert deleted.returncode == 0 and deleted.stdout == '', deleted.stderr
    assert ok(cloud, 'image-cache-purge') == {'purged': 1}
    assert ok(cloud, 'image-cache-list') == []
    purged = gc_api(cloud, 'image-cache-purge', '--backend', 'files')
    assert purged.returncode == 0 and purged.stdout == 'Purged 0 image cache entries.\n'


def test_bad_input_is_one_error_line(cloud, backend, tmp_path):
    ok(cloud, 'volume-create', '--size', '2', '--name', 'big', '--wait')
    ok(cloud, 'volume-create', '--size', '1', '--name', 'small', '--wait')
    snap = ok(cloud, 'snapshot-create', 'big', '--name', 'of-big', '--wait')
    assert 'belongs to volume' in fails(cloud, 'volume-revert', 'small', 'of-big')
    assert 'belongs to volume' in fails(cloud, 'volume-revert', 'small', snap['id'])
    assert 'cannot shrink' in fails(cloud, 'volume-extend', 'big', '1')
    assert "No volume with a name or ID of 'missing' exists." in fails(
        cloud, 'volume-download', 'missing', '--file', str(tmp_path / 'x'))
    assert not (tmp_path / 'x').exists()
    assert "No snapshot with a name or ID of 'nope'" in fails(
        cloud, 'volume-create', '--snapshot', 'nope')
    assert '--size is required' in fails(cloud, 'volume-create', '--name', 'x')
    assert 'at most one of --snapshot, --source-volume and --image' in fails(
        cloud, 'volume-create', '--snapshot', 'of-big', '--image', '/x.img')
    assert 'image relative.img was not found' in fails(cloud, 'volume-create', '--image',
                                                       'relative.img')
    assert 'is not an image name' in fails(cloud, 'volume-create', '--image', '../x.img')
    assert 'Cannot read' in fails(cloud, 'volume-upload', 'small', '--file',
                                  str(tmp_path / 'absent'))
    (tmp_path / 'huge').write_bytes(b'')
    os.truncate(tmp_path / 'huge', GiB + 1)
    assert 'larger than the volume (1 GiB)' in fails(cloud, 'volume-upload', 'small',
                                                     '--file', str(tmp_path / 'huge'))
    assert "Unable to delete snapshot(s): nope: No snapshot with a name or ID of 'nope'" in \
        fails(cloud, 'snapshot-delete', 'nope')
    usage = gc_api(cloud, 'volume-upload-to-image', 'big', 'x', '--disk-format', 'vmdk')
    assert usage.returncode == 2


def test_python_client(cloud, backend):
    gc = client.get_client(session.Session(auth=noauth.NoAuth(endpoint=cloud.url)))
    volume = gc.gc_volumes.wait(gc.gc_volumes.create(size=1, name='py'))
    assert gc.gc_volumes.upload(volume, b'hello' * 1000) == {
        'id': volume.id, 'bytes_written': 5000}
    snap = gc.gc_snapshots.create(volume, name='s1')
    assert snap.status == 'creating'
    snap = gc.gc_snapshots.wait(snap)
    assert (snap.status, snap.volume_id) == ('available', volume.id)
    assert [s.name for s in gc.gc_snapshots.list(volume_id=volume)] == ['s1']

    class Head:
        def __init__(self) -> None:
            self.data, self.count = b'', 0

        def write(self, chunk: bytes) -> None:
            if len(self.data) < 5000:
                self.data += chunk[:5000 - len(self.data)]
            self.count += len(chunk)

    sink, seen = Head(), []
    assert gc.gc_volumes.download(volume, sink, progress=seen.append) == GiB
    assert sink.data == b'hello' * 1000 and seen[-1] == GiB
    gc.gc_volumes.wait(volume)
    gc.gc_volumes.extend(volume, 3)
    assert gc.gc_volumes.wait(volume).size == 3

    clone = gc.gc_volumes.wait(gc.gc_volumes.create(snapshot_id=snap.id))
    assert (clone.size, clone.snapshot_id) == (1, snap.id)
    attachment = gc.gc_attachments.wait(gc.gc_attachments.create(clone, mode='ro'))
    assert attachment.status == 'attached' and attachment.mode == 'ro'
    gc.gc_volumes.force_detach(clone)
    assert gc.gc_attachments.wait(attachment, deleted=True) is None
    assert gc.gc_volumes.wait(clone).status == 'available'
    assert gc.gc_image_cache.list() == [] and gc.gc_image_cache.purge() == 0
    gc.gc_volumes.delete(volume, cascade=True)
    assert gc.gc_volumes.wait(volume, deleted=True) is None
    assert gc.gc_snapshots.list() == []
