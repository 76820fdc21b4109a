"""Errors raised on a compute host keep their class and HTTP code across RPC."""

import importlib
import pkgutil

import oslo_messaging
import pytest
from oslo_messaging._drivers import common as driver_common

import gridcentric_storage
from gridcentric_storage.common import exception, rpc


def _all_subclasses(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from _all_subclasses(sub)


def _every_error() -> list[type]:
    for module in pkgutil.walk_packages(gridcentric_storage.__path__, 'gridcentric_storage.'):
        if ('.client' in module.name or '.migrations' in module.name
                or module.name.endswith('.wsgi_app')):
            continue
        try:
            importlib.import_module(module.name)
        except ModuleNotFoundError as e:
            # gridcentric_storage.nova.virt and .scheduler_filter run only
            # inside Nova's own processes, where Nova is importable
            if not (e.name or '').split('.')[0] == 'nova':
                raise
    return sorted(_all_subclasses(exception.GCException), key=lambda c: c.__name__)


def test_every_error_is_defined_in_the_one_exceptions_module():
    outside = ['%s.%s' % (cls.__module__, cls.__name__) for cls in _every_error()
               if cls.__module__.startswith('gridcentric_storage.')
               and cls.__module__ != 'gridcentric_storage.common.exception']
    assert outside == []
    assert rpc.ALLOWED_EXMODS == ['gridcentric_storage.common.exception']


@pytest.mark.parametrize('cls', _every_error(), ids=lambda c: c.__name__)
def test_error_survives_the_trip_through_oslo_messaging(cls):
    # What a compute host's manager raises, as the API process gets it back.
    raised = cls(id='vol-1', reason='because', resource='Volume', state='x', host='h',
                 field='f', name='n', count=1, size=1, limit=1, action='a', kind='filter',
                 available='none', driver='d', hook='h', allowed='a', names='n',
                 volume_type='t', expression='e', error_class='GenericError')
    wire = driver_common.serialize_remote_exception((cls, raised, None))
    received = driver_common.deserialize_remote_exception(wire, rpc.ALLOWED_EXMODS)
    assert not isinstance(received, oslo_messaging.RemoteError)
    assert isinstance(received, cls)
    assert received.code == raised.code
    assert str(received).startswith(raised.message)


def test_qmp_error_keeps_its_qemu_error_class_across_rpc():
    raised = exception.QmpError(reason='QMP stop failed', error_class='DeviceNotActive')
    wire = driver_common.serialize_remote_exception((type(raised), raised, None))
    received = driver_common.deserialize_remote_exception(wire, rpc.ALLOWED_EXMODS)
    assert received.error_class == 'DeviceNotActive'
    assert 'QMP stop failed' in received.message
