"""The image source contract (``gridcentric_storage.image.base``), run on the
image store (qemu-img probes its images) and on the fake (temporary directory,
formats read in Python). Images are put in as an operator or a test would: files
in the store's directories, ``add`` on the fake.
"""

import os
import subprocess
from collections.abc import Callable

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.image import base
from gridcentric_storage.image.fake import FakeImageSource
from gridcentric_storage.image.store import ImageStore

MiB = 1 << 20
Put = Callable[..., str]


def ctxt(project, admin=False):
    return context.RequestContext(user_id='u', project_id=project, is_admin=admin,
                                  overwrite=False)


MEMBER, OTHER, ADMIN = ctxt('projA'), ctxt('projB'), ctxt('admin', admin=True)


@pytest.fixture(params=['store', 'fake'])
def source_and_put(request, tmp_path) -> tuple[base.ImageSource, Put]:
    if request.param == 'fake':
        fake = FakeImageSource(str(tmp_path / 'fake'))
        return fake, lambda name, data=b'\1' * MiB, project=None: fake.add(name, data,
                                                                            project)
    images = ImageStore(root=str(tmp_path / 'store'), allowed_paths=[])

    def put(name: str, data: bytes = b'\1' * MiB, project: str | None = None) -> str:
        directory = images.project_dir(project) if project else images.public_dir
        assert directory is not None
        os.makedirs(directory, exist_ok=True)
        path = os.path.join(directory, name)
        if os.path.exists(path):
            os.unlink(path)  # a new file, as an operator's copy makes
        with open(path, 'wb') as f:
            f.write(data)
        return path
    return images, put


@pytest.fixture
def source(source_and_put) -> base.ImageSource:
    return source_and_put[0]


@pytest.fixture
def put(source_and_put) -> Put:
    return source_and_put[1]


def qcow2(tmp_path, name: str, size: str, *extra: str) -> bytes:
    path = str(tmp_path / name)
    subprocess.run(['qemu-img', 'create', '-q', '-f', 'qcow2', *extra, path, size],
                   check=True)
    with open(path, 'rb') as f:
        return f.read()


def test_a_name_is_the_projects_image_first_then_the_public_one(source, put):
    put('debian', b'\1' * MiB)
    public = source.locate(MEMBER, 'debian')
    with open(public, 'rb') as f:
        assert f.read() == b'\1' * MiB
    put('debian', b'\2' * MiB, project='projA')
    own = source.path(MEMBER, 'debian')
    with open(own, 'rb') as f:
        assert f.read() == b'\2' * MiB
    assert source.locate(OTHER, 'debian') == public
    info = source.info(MEMBER, 'debian')
    assert {k: info[k] for k in ('id', 'disk_format', 'virtual_size', 'size')} == {
        'id': 'debian', 'disk_format': 'raw', 'virtual_size': MiB, 'size': MiB}


def test_another_projects_image_is_not_found(source, put):
    put('secret', project='projB')
    for call in (source.locate, source.path, source.info):
        with pytest.raises(exception.Invalid, match='image secret was not found') as error:
            call(MEMBER, 'secret')
        assert error.value.code == 400


def test_a_qcow2_image_says_so_with_its_virtual_size(source, put, tmp_path):
    put('disk.qcow2', qcow2(tmp_path, 'disk.qcow2', '64M'))
    info = source.info(MEMBER, 'disk.qcow2')
    assert (info['disk_format'], info['virtual_size']) == ('qcow2', 64 * MiB)
    assert info['size'] < MiB


def test_an_image_with_a_backing_file_is_refused(source, put, tmp_path):
    qcow2(tmp_path, 'base.qcow2', '64M')
    put('overlay', qcow2(tmp_path, 'overlay', '64M', '-F', 'qcow2', '-b',
                         str(tmp_path / 'base.qcow2')))
    with pytest.raises(exception.Invalid, match='backing file'):
        source.info(MEMBER, 'overlay')


@pytest.mark.parametrize('ref', ['../projects/projB/secret', 'a/b', '.hidden', '..', '-x',
                                 'name\n', 'x' * 256, '', 'nbd:host:1', None, 7])
def test_malformed_references_are_400(source, put, ref):
    put('secret', project='projB')
    with pytest.raises(exception.Invalid) as error:
        source.locate(MEMBER, ref)
    assert error.value.code == 400


def test_host_paths_are_for_administrators_and_only_the_sources_files(source, put,
                                                                       tmp_path):
    put('debian')
    path = source.locate(MEMBER, 'debian')
    for ref in (path, '/etc/passwd'):
        with pytest.raises(exception.Forbidden) as error:
            source.locate(MEMBER, ref, 'boot file')
        assert error.value.code == 403 and 'boot file' in str(error.value)
    assert source.locate(ADMIN, path) == path
    elsewhere = tmp_path / 'elsewhere'
    elsewhere.write_bytes(b'\1' * MiB)
    for ref in (str(elsewhere), '/etc/shadow'):
        with pytest.raises(exception.Forbidden):
            source.locate(ADMIN, ref)


def test_an_empty_image_is_still_being_written(source, put):
    put('disk', b'')
    with pytest.raises(exception.Invalid, match='empty'):
        source.info(MEMBER, 'disk')
    assert source.list(MEMBER) == []


def test_a_replaced_image_is_noticed(source, put):
    put('disk')
    info = source.info(MEMBER, 'disk')
    source.check_unchanged(MEMBER, info)
    put('disk', b'\2' * MiB)
    assert source.info(MEMBER, 'disk')['cache_key'] != info['cache_key']
    with pytest.raises(exception.Invalid, match='changed while it was read'):
        source.check_unchanged(MEMBER, info)


def test_an_export_reserves_its_name_and_never_overwrites(source):
    source.reserve(MEMBER, 'copy')
    with pytest.raises(exception.Conflict) as error:
        source.reserve(MEMBER, 'copy')
    assert error.value.code == 409
    source.reserve(OTHER, 'copy')  # another project's namespace
    with pytest.raises(exception.Invalid, match='empty'):
        source.info(MEMBER, 'copy')  # not an image until published
    path, work = source.export_paths(MEMBER, 'copy')
    assert os.path.basename(work).startswith('.') and work != path
    with open(work, 'wb') as f:
        f.write(b'\3' * MiB)
    source.finish_export(MEMBER, 'copy', work)
    assert source.locate(MEMBER, 'copy') == path and not os.path.exists(work)
    assert source.info(MEMBER, 'copy')['virtual_size'] == MiB
    with pytest.raises(exception.Invalid, match='empty'):
        source.info(OTHER, 'copy')  # OTHER's is still only reserved
    with pytest.raises(exception.Conflict):
        source.reserve(MEMBER, 'copy')
    with pytest.raises(exception.Invalid, match='not reserved'):
        source.export_paths(MEMBER, 'copy')


def test_a_failed_export_leaves_nothing(source):
    source.reserve(MEMBER, 'copy')
    _, work = source.export_paths(MEMBER, 'copy')
    with open(work + '.part', 'wb') as f:
        f.write(b'\3' * MiB)
    source.finish_export(MEMBER, 'copy', None)
    assert not os.path.exists(work + '.part')
    assert source.list(MEMBER) == []
    source.reserve(MEMBER, 'copy')  # the name is free again


def test_remove_incomplete_keeps_finished_images(source, put):
    put('done', project='projA')
    source.reserve(MEMBER, 'cut-short')
    _, work = source.export_paths(MEMBER, 'cut-short')
    with open(work + '.part', 'wb') as f:
        f.write(b'\3' * MiB)
    removed = source.remove_incomplete()
    assert work + '.part' in removed and not os.path.exists(work + '.part')
    assert [i['name'] for i in source.list(MEMBER)] == ['done']
    source.reserve(MEMBER, 'cut-short')  # the name is free again


def test_list_and_delete(source, put):
    put('debian')
    put('shared')
    put('shared', b'\2' * (2 * MiB), project='projA')
    put('secret', project='projB')
    source.reserve(MEMBER, 'pending')
    assert source.list(MEMBER) == [
        {'name': 'debian', 'size': MiB, 'visibility': 'public'},
        {'name': 'shared', 'size': 2 * MiB, 'visibility': 'private'}]
    with pytest.raises(exception.Conflict):
        source.delete(MEMBER, 'pending')
    source.delete(MEMBER, 'shared')
    assert source.info(MEMBER, 'shared')['size'] == MiB  # the public one again
    for name in ('shared', 'secret', 'debian'):  # public ones are the operator's
        with pytest.raises(exception.NotFound) as error:
            source.delete(MEMBER, name)
        assert error.value.code == 404
    with pytest.raises(exception.Invalid):
        source.delete(MEMBER, '../projB/secret')


@pytest.mark.parametrize('project', ['../projB', 'a/b', '..', None, ''])
def test_unsafe_project_ids_get_public_images_only(source, put, project):
    put('secret', project='projB')
    put('debian')
    assert source.locate(ctxt(project), 'debian') == source.locate(MEMBER, 'debian')
    with pytest.raises(exception.Invalid):
        source.locate(ctxt(project), 'secret')
    with pytest.raises(exception.Invalid, match='cannot own images'):
        source.reserve(ctxt(project), 'x')
    assert [i['name'] for i in source.list(ctxt(project))] == ['debian']
