"""Paste-deploy factories and the function services use to build the API app."""

import os
import sys
from typing import Any

import webob.dec
from oslo_config import cfg
from paste import deploy

from gridcentric_storage.api import middleware, router, wsgi

CONF = cfg.CONF
_PACKAGE_PASTE = os.path.join(os.path.dirname(__file__), '..', '..', 'etc',
                              'gridcentric-storage', 'api-paste.ini')


def pipeline_factory(loader: Any, global_conf: dict[str, Any], **local_conf: Any) -> Any:
    """Choose the pipeline named by ``[api] auth_strategy`` (as Cinder does).

    Discovery documents (``router.PUBLIC_PATHS``) skip authentication, as
    Nova's version document does, so clients can find the API before they
    have a token. Whatever the paste file says, the input guard comes first
    and a fault wrapper covers the choice of pipeline itself: neither may
    depend on a deployment's copy of api-paste.ini being current.
    """
    names = local_conf[CONF.api.auth_strategy].split()
    app = loader.get_app(names[-1])
    public = app
    for name in reversed(names[:-1]):
        app = loader.get_filter(name)(app)
    for name in ('request_id', 'faultwrap'):
        if name in names:
            public = loader.get_filter(name)(public)

    @webob.dec.wsgify(RequestClass=wsgi.Request)
    def dispatch(req: wsgi.Request) -> Any:
        path = req.path_info.rstrip('/') or '/'
        if path in router.PUBLIC_PATHS:
            return public
        return app

    return wsgi.InputGuard(middleware.FaultWrapper(dispatch))


def find_paste_config() -> str:
    name = CONF.api.api_paste_config
    if os.path.isabs(name):
        candidates = [name]
    else:
        config_files = CONF.config_file if 'config_file' in CONF else []
        candidates = [os.path.join(os.path.dirname(f), name) for f in config_files]
        candidates += [os.path.join('/etc/gridcentric-storage', name),
                       os.path.join(sys.prefix, 'etc', 'gridcentric-storage', name),
                       _PACKAGE_PASTE]
    for path in candidates:
        if os.path.exists(path):
            return os.path.abspath(path)
    raise cfg.ConfigFilesNotFoundError([name])


def check_auth_strategy() -> None:
    """noauth trusts every caller, so it is refused unless bound to loopback."""
    if CONF.api.auth_strategy == 'noauth' and not middleware.is_loopback(CONF.api.listen):
        raise SystemExit('[api] auth_strategy = noauth is only allowed when [api] listen '
                         'is a loopback address, not %s' % CONF.api.listen)


def load_app() -> Any:
    check_auth_strategy()
    return deploy.loadapp('config:%s' % find_paste_config(), name='gridcentric')
