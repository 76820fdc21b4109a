"""Images as local files (raw or qcow2) on the host that runs the driver.

``image_id`` is an absolute path to an existing regular file. This is the
image service drivers receive in ``copy_image_to_volume`` and
``copy_volume_to_image`` (Cinder's signatures), e.g.::

    service.info(ctxt, '/srv/images/debian.qcow2')
    == {'id': '/srv/images/debian.qcow2', 'disk_format': 'qcow2',
        'virtual_size': 2147483648, 'size': 412090368,
        'cache_key': 'sha256 of path, size and mtime'}

The format comes from ``qemu-img info`` and a qcow2 image whose header names a
backing file is refused, so an image can never make a driver read another
file of the host.
"""

import hashlib
import json
import os
from typing import Any

from gridcentric_storage.common import exception, processutils

QEMU_IMG = 'qemu-img'
FORMATS = ('raw', 'qcow2')


class ImageNotFound(exception.Invalid):
    msg_fmt = 'Image %(image_id)s could not be found: %(reason)s'


class LocalImageService:
    def _check_path(self, image_id: str) -> str:
        if not isinstance(image_id, str) or not os.path.isabs(image_id):
            raise ImageNotFound(image_id=image_id, reason='not an absolute path')
        if not os.path.isfile(image_id):
            raise ImageNotFound(image_id=image_id, reason='no such file')
        return os.path.realpath(image_id)

    def path(self, context: Any, image_id: str) -> str:
        return self._check_path(image_id)

    def info(self, context: Any, image_id: str) -> dict[str, Any]:
        path = self._check_path(image_id)
        out = processutils.execute([QEMU_IMG, 'info', '--output=json', path])
        details = json.loads(out)
        disk_format = details.get('format')
        if disk_format not in FORMATS:
            raise exception.Invalid(reason='image %s is %s; only %s are supported'
                                    % (image_id, disk_format, ', '.join(FORMATS)))
        if details.get('backing-filename'):
            raise exception.Invalid(reason='image %s has a backing file; flatten it first'
                                    % image_id)
        stat = os.stat(path)
        key = hashlib.sha256(('%s:%d:%d' % (path, stat.st_size, stat.st_mtime_ns))
                             .encode()).hexdigest()
        return {'id': image_id, 'disk_format': disk_format,
                'virtual_size': int(details['virtual-size']), 'size': stat.st_size,
                'cache_key': key}
