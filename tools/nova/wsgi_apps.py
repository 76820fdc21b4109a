"""The WSGI apps of tools/nova.sh's stack, for gunicorn.

Keystone and nova-api parse the process's argv with oslo.config when their
WSGI module is imported; under gunicorn that is gunicorn's argv, which
oslo.config rejects. ``gunicorn 'wsgi_apps:app("keystone.wsgi.api")'`` resets
argv, then imports the module and returns its ``application``. Each service
reads its config from its own $OS_<SERVICE>_CONFIG_DIR.
"""

import importlib
import sys
from typing import Any


def app(module: str) -> Any:
    sys.argv = sys.argv[:1]
    return importlib.import_module(module).application
