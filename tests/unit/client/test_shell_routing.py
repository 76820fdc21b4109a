"""Where ``gc-api`` sends a command: the live-image (Cobalt) verbs go to Nova's endpoint
in a cloud whose catalog has one, everything else (and anything explicit) to ours."""

from __future__ import annotations

import argparse

import pytest
from keystoneauth1 import exceptions as ks_exc
from keystoneauth1 import noauth
from keystoneauth1.identity import v3

from gridcentric_storage.client import live_images, shell, volumes


class Catalog:
    """The session's catalog lookup: the service types that have an endpoint."""

    def __init__(self, *types: str) -> None:
        self.types = set(types)
        self.asked: list[str] = []

    def get_endpoint(self, auth, service_type, **kwargs):
        self.asked.append(service_type)
        if service_type not in self.types:
            raise ks_exc.EndpointNotFound()
        return 'http://%s.example:1234/' % service_type


def _args(func, service_type=None, endpoint_override=None):
    return argparse.Namespace(func=func, os_service_type=service_type,
                              os_endpoint_override=endpoint_override,
                              os_interface='public', os_region_name=None)


KEYSTONE = v3.Password(auth_url='http://keystone.example/v3', username='u', password='p')


@pytest.mark.parametrize('command', sorted(live_images.COBALT_COMMANDS, key=repr))
def test_cobalt_verbs_go_to_nova_when_the_catalog_has_it(command):
    catalog = Catalog('compute', 'gridcentric')
    assert shell._service_type(_args(command), KEYSTONE, catalog) == 'compute'


def test_cobalt_verbs_stay_with_us_without_nova():
    catalog = Catalog('gridcentric')
    assert shell._service_type(_args(live_images.do_live_image_create), KEYSTONE,
                               catalog) == 'gridcentric'


def test_other_commands_never_ask_for_nova():
    catalog = Catalog('compute', 'gridcentric')
    assert shell._service_type(_args(volumes.do_volume_list), KEYSTONE,
                               catalog) == 'gridcentric'
    assert catalog.asked == []


@pytest.mark.parametrize('args', [
    _args(live_images.do_live_image_create, service_type='gridcentric'),
    _args(live_images.do_live_image_create, endpoint_override='http://gc.example:8779'),
])
def test_what_the_user_chose_wins(args):
    catalog = Catalog('compute', 'gridcentric')
    assert shell._service_type(args, KEYSTONE, catalog) == (args.os_service_type
                                                            or 'gridcentric')
    assert catalog.asked == []


def test_without_keystone_there_is_no_catalog_to_ask():
    catalog = Catalog('compute')
    auth = noauth.NoAuth(endpoint='http://127.0.0.1:8779')
    assert shell._service_type(_args(live_images.do_bless), auth, catalog) == 'gridcentric'
    assert catalog.asked == []
