"""Errors raised on a compute host keep their HTTP code across RabbitMQ."""

import importlib
import pkgutil

import gridcentric_storage
from gridcentric_storage.common import exception, rpc


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def test_every_error_with_a_code_may_cross_rpc():
    # oslo.messaging rebuilds only exceptions of allowed modules; any other
    # becomes a RemoteError, which the API can only answer with a 500.
    for module in pkgutil.walk_packages(gridcentric_storage.__path__, 'gridcentric_storage.'):
        if ('.client' in module.name or '.migrations' in module.name
                or module.name.endswith('.wsgi_app')):
            continue
        importlib.import_module(module.name)
    outside = sorted('%s.%s' % (cls.__module__, cls.__name__)
                     for cls in _all_subclasses(exception.GCException)
                     if cls.__module__.startswith('gridcentric_storage.')
                     and cls.__module__ not in rpc.ALLOWED_EXMODS)
    assert outside == []
