"""`gc-api image-list` / `image-delete` and the ``gc_images`` manager, real API."""

import json
import os

from keystoneauth1 import noauth, session

from gridcentric_storage import client
from tests.fixtures.images import store_file
from tests.fixtures.services import gc_api


def test_cli_lists_and_deletes_the_projects_images(cloud):
    store_file('debian.qcow2', b'public')
    mine = store_file('backup', b'mine', project='admin')  # gc-api is admin:admin
    store_file('secret', b'theirs', project='projB')
    listed = gc_api(cloud, '--json', 'image-list')
    assert listed.returncode == 0, listed.stderr
    assert [(i['name'], i['visibility']) for i in json.loads(listed.stdout)] == [
        ('backup', 'private'), ('debian.qcow2', 'public')]
    table = gc_api(cloud, 'image-list')
    assert 'Visibility' in table.stdout and 'debian.qcow2' in table.stdout
    refused = gc_api(cloud, 'image-delete', 'backup', 'debian.qcow2')
    assert refused.returncode == 1 and refused.stderr.count('\n') == 1
    assert 'Unable to delete image(s): debian.qcow2' in refused.stderr
    gc = client.get_client(session.Session(auth=noauth.NoAuth(endpoint=cloud.url)))
    assert [i.name for i in gc.gc_images.list()] == ['debian.qcow2']
    assert not os.path.exists(mine)
