"""Resolving image references: names of the store for everyone, host paths for admins."""

import os

import pytest

from gridcentric_storage.common import context, exception
from gridcentric_storage.image.store import ImageStore, check_reference

MiB = 1 << 20


def ctxt(project='projA', admin=False):
    return context.RequestContext(user_id='u', project_id=project, is_admin=admin,
                                  overwrite=False)


MEMBER, OTHER, ADMIN = ctxt(), ctxt('projB'), ctxt('admin', admin=True)


def put(path, data=b'\1' * MiB):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)
    return str(path)


@pytest.fixture
def allowed(tmp_path):
    return tmp_path / 'allowed'


@pytest.fixture
def store(tmp_path, allowed):
    allowed.mkdir()
    return ImageStore(root=str(tmp_path / 'store'), allowed_paths=[str(allowed)])


def test_names_resolve_to_the_project_first_then_public(store):
    public = put(os.path.join(store.public_dir, 'debian'))
    assert store.locate(MEMBER, 'debian') == public
    own = put(os.path.join(store.project_dir('projA'), 'debian'))
    assert store.locate(MEMBER, 'debian') == own
    assert store.locate(OTHER, 'debian') == public
    info = store.info(MEMBER, 'debian')
    assert (info['id'], info['disk_format'], info['virtual_size']) == ('debian', 'raw', MiB)


def test_another_projects_image_is_not_found(store):
    put(os.path.join(store.project_dir('projB'), 'secret'))
    with pytest.raises(exception.Invalid, match='image secret was not found') as error:
        store.locate(MEMBER, 'secret')
    assert error.value.code == 400


@pytest.mark.parametrize('ref', ['../projects/projB/secret', 'a/b', '.hidden', '..', '-x',
                                 'name\n', 'x' * 256, '', 'C:\\x', 'nbd:host:1'])
def test_malformed_references_are_400(store, ref):
    put(os.path.join(store.project_dir('projB'), 'secret'))
    with pytest.raises(exception.Invalid) as error:
        store.locate(MEMBER, ref)
    assert error.value.code == 400


@pytest.mark.parametrize('path', ['/etc/shadow', '/etc/passwd', '/nonexistent'])
def test_a_member_may_not_name_host_paths(store, path):
    with pytest.raises(exception.Forbidden) as error:
        check_reference(MEMBER, path)
    assert error.value.code == 403
    with pytest.raises(exception.Forbidden):
        store.locate(MEMBER, path)


def test_a_member_may_not_name_a_store_file_by_path(store):
    theirs = put(os.path.join(store.project_dir('projB'), 'secret'))
    with pytest.raises(exception.Forbidden):
        store.locate(MEMBER, theirs)


def test_admin_paths_only_under_allowed_paths_or_the_store(store, allowed, tmp_path):
    inside = put(allowed / 'kernel')
    assert store.locate(ADMIN, inside) == inside
    assert store.locate(ADMIN, str(allowed / '..' / 'allowed' / 'kernel')) == inside
    exported = put(os.path.join(store.project_dir('projB'), 'x'))
    assert store.locate(ADMIN, exported) == exported
    outside = put(tmp_path / 'elsewhere' / 'kernel')
    for path in (outside, '/etc/shadow', str(allowed / '..' / 'elsewhere' / 'kernel'),
                 str(allowed) + '-sibling/kernel'):
        with pytest.raises(exception.Forbidden, match='allowed_paths'):
            store.locate(ADMIN, path)
    os.symlink('/etc/shadow', allowed / 'link')
    with pytest.raises(exception.Forbidden):
        store.locate(ADMIN, str(allowed / 'link'))
    with pytest.raises(exception.Invalid, match='was not found'):
        store.locate(ADMIN, str(allowed / 'missing'))


def test_no_allowed_paths_leaves_admins_the_store(tmp_path):
    store = ImageStore(root=str(tmp_path / 'store'), allowed_paths=[])
    with pytest.raises(exception.Forbidden):
        store.locate(ADMIN, put(tmp_path / 'disk'))


def test_symlinks_out_of_a_project_are_not_followed(store):
    os.makedirs(store.project_dir('projA'))
    os.symlink('/etc/passwd', os.path.join(store.project_dir('projA'), 'passwd'))
    os.makedirs(store.project_dir('projB'))
    put(os.path.join(store.project_dir('projB'), 'secret'))
    os.symlink('../projB/secret', os.path.join(store.project_dir('projA'), 'theirs'))
    for name in ('passwd', 'theirs'):
        with pytest.raises(exception.Invalid, match='was not found'):
            store.locate(MEMBER, name)


def test_a_public_entry_may_link_into_allowed_paths_only(store, allowed):
    os.makedirs(store.public_dir)
    os.symlink(put(allowed / 'debian'), os.path.join(store.public_dir, 'debian'))
    assert store.locate(MEMBER, 'debian') == str(allowed / 'debian')
    os.symlink('/etc/shadow', os.path.join(store.public_dir, 'shadow'))
    with pytest.raises(exception.Invalid, match='was not found'):
        store.locate(MEMBER, 'shadow')


@pytest.mark.parametrize('project', ['../projB', 'a/b', '..', None, ''])
def test_unsafe_project_ids_get_public_images_only(store, project):
    put(os.path.join(store.project_dir('projB'), 'secret'))
    public = put(os.path.join(store.public_dir, 'debian'))
    assert store.locate(ctxt(project), 'debian') == public
    with pytest.raises(exception.Invalid):
        store.locate(ctxt(project), 'secret')
    with pytest.raises(exception.Invalid, match='cannot own images'):
        store.reserve(ctxt(project), 'x')


def test_empty_and_replaced_images(store):
    path = put(os.path.join(store.public_dir, 'disk'), b'')
    with pytest.raises(exception.Invalid, match='empty'):
        store.info(MEMBER, 'disk')
    put(path)
    info = store.info(MEMBER, 'disk')
    store.check_unchanged(MEMBER, info)
    os.unlink(path)
    put(path)  # a new file (inode) under the same name
    with pytest.raises(exception.Invalid, match='changed while it was read'):
        store.check_unchanged(MEMBER, info)


def test_exports_reserve_their_name_and_never_overwrite(store):
    store.reserve(MEMBER, 'copy')
    with pytest.raises(exception.Conflict) as error:
        store.reserve(MEMBER, 'copy')
    assert error.value.code == 409
    store.reserve(OTHER, 'copy')  # another project's namespace
    path, work = store.export_paths(MEMBER, 'copy')
    assert os.path.basename(work).startswith('.')
    put(work)
    store.finish_export(MEMBER, 'copy', work)
    assert os.path.getsize(path) == MiB and not os.path.exists(work)
    with pytest.raises(exception.Conflict):
        store.reserve(MEMBER, 'copy')
    with pytest.raises(exception.Invalid, match='not reserved'):
        store.export_paths(MEMBER, 'copy')


def test_a_failed_export_leaves_nothing(store):
    store.reserve(MEMBER, 'copy')
    path, work = store.export_paths(MEMBER, 'copy')
    put(work + '.part')
    store.finish_export(MEMBER, 'copy', None)
    assert os.listdir(os.path.dirname(path)) == []
    store.reserve(MEMBER, 'copy')  # the name is free again


def test_remove_incomplete_keeps_finished_images(store):
    done = put(os.path.join(store.project_dir('projA'), 'done'))
    store.reserve(MEMBER, 'cut-short')
    put(os.path.join(store.project_dir('projA'), '.cut-short.export.part'))
    assert len(store.remove_incomplete()) == 2
    assert os.listdir(store.project_dir('projA')) == ['done'] and os.path.isfile(done)


def test_list_and_delete(store):
    put(os.path.join(store.public_dir, 'debian'))
    put(os.path.join(store.public_dir, 'shared'))
    put(os.path.join(store.project_dir('projA'), 'shared'))
    put(os.path.join(store.project_dir('projB'), 'secret'))
    store.reserve(MEMBER, 'pending')
    assert [(i['name'], i['visibility']) for i in store.list(MEMBER)] == [
        ('debian', 'public'), ('shared', 'private')]
    with pytest.raises(exception.Conflict):
        store.delete(MEMBER, 'pending')
    store.delete(MEMBER, 'shared')
    assert store.locate(MEMBER, 'shared') == os.path.join(store.public_dir, 'shared')
    for name in ('shared', 'secret', 'debian'):  # public ones are the operator's
        with pytest.raises(exception.NotFound):
            store.delete(MEMBER, name)
    with pytest.raises(exception.Invalid):
        store.delete(MEMBER, '../projB/secret')
