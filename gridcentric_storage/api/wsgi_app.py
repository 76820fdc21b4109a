"""WSGI entry point for uWSGI / mod_wsgi: ``application`` is the API.

Configuration files come from ``GRIDCENTRIC_CONFIG_FILES`` (comma separated),
default ``/etc/gridcentric-storage/gridcentric-storage.conf`` when it exists.
"""

import os

from gridcentric_storage import conf
from gridcentric_storage.api import app
from gridcentric_storage.common import rpc

_DEFAULT = '/etc/gridcentric-storage/gridcentric-storage.conf'
_files = os.environ.get('GRIDCENTRIC_CONFIG_FILES')
_config_files = _files.split(',') if _files else [f for f in [_DEFAULT] if os.path.exists(f)]
conf.parse_args([], default_config_files=_config_files)
rpc.init()
application = app.load_app()
