"""QoS specs (``/v1/qos-specs``, admin only) and the ``qos-*`` commands.

Named I/O limits with Cinder's keys (``total_iops_sec``, ``read_bytes_sec``,
``*_max`` bursts, ``*_per_gb`` scaled by the volume's size...) and a
``consumer`` (``back-end``: the storage enforces them; ``front-end``: the
hypervisor of the server using the volume; ``both``). They govern a volume
associated with them, or every volume of an associated backend that has none
of its own. A novaclient extension module: :class:`QosSpecsManager` is
attached to the client as ``gc_qos``::

    gold = gc.gc_qos.create('gold', {'total_iops_sec_per_gb': 30}, consumer='both')
    gc.gc_qos.associate_volume(volume, gold)          # or associate_backend(backend, gold)
    gc.gc_qos.set_keys(gold, {'total_bytes_sec': 100 << 20})   # applied at once
    gc.gc_volumes.get(volume).qos   # {'consumer': 'both', 'limits': {...}}
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from novaclient import base, exceptions
from novaclient.utils import arg, find_resource

from gridcentric_storage.client import utils


class QosSpecs(base.Resource):
    def __repr__(self) -> str:
        return '<QosSpecs %s>' % (self._info.get('name') or self._info.get('id'))


class QosSpecsManager(utils.GCManager):
    resource_class = QosSpecs
    collection_key = 'qos_specs'
    resource_key = 'qos_specs'
    base_url = '/v1/qos-specs'

    def list(self) -> list[QosSpecs]:
        resp, body = self.api.client.get(self.base_url)
        return base.ListWithMeta([self._make(info) for info in body['qos_specs']], resp)

    def create(self, name: str, specs: dict[str, Any], consumer: str | None = None
               ) -> QosSpecs:
        body: dict[str, Any] = dict(specs, name=name)
        if consumer is not None:
            body['consumer'] = consumer
        return self._post(self.base_url, {'qos_specs': body})

    def set_keys(self, specs: Any, keys: dict[str, Any]) -> QosSpecs:
        """Set keys (``consumer`` too); the volumes they govern change at once."""
        return self._put(self._url(specs), {'qos_specs': keys})

    def unset_keys(self, specs: Any, keys: Sequence[str]) -> None:
        self.api.client.put(self._url(specs, '/delete_keys'), body={'keys': list(keys)})

    def delete(self, specs: Any, force: bool = False) -> None:
        """Delete; in use (associated), only with ``force``, which disassociates."""
        self._delete(self._url(specs) + ('?force=true' if force else ''))

    def associations(self, specs: Any) -> Sequence[dict[str, Any]]:
        resp, body = self.api.client.get(self._url(specs, '/associations'))
        return tuple(body['qos_associations'])

    def associate_volume(self, volume: Any, specs: Any) -> None:
        """Govern ``volume`` by ``specs`` (None: by its backend's again)."""
        specs_id = base.getid(specs) if specs is not None else None
        self.api.client.post('/v1/volumes/%s/action' % base.getid(volume),
                             body={'qos': {'qos_specs_id': specs_id}})

    def associate_backend(self, backend: Any, specs: Any) -> None:
        """Govern the backend's volumes that have no specs of their own (None: none)."""
        specs_id = base.getid(specs) if specs is not None else None
        self.api.client.put('/v1/backends/%s' % base.getid(backend),
                            body={'backend': {'qos_specs_id': specs_id}})


# ---------------------------------------------------------------------------
# gc-api commands

LIST_COLUMNS = [('ID', 'id'), ('Name', 'name'), ('Consumer', 'consumer'),
                ('Specs', 'specs')]


def _specs_args(args: argparse.Namespace) -> dict[str, Any]:
    return dict(utils.key_values(args.specs, 'KEY=VALUE', parse_json=True))


@arg('name', metavar='NAME')
@arg('specs', metavar='KEY=VALUE', nargs='*',
     help='Limits, e.g. total_iops_sec=500 read_bytes_sec_per_gb=1048576.')
@arg('--consumer', choices=['back-end', 'front-end', 'both'],
     help='Who enforces them: the storage (default), the hypervisor, or both.')
def do_qos_create(gc: Any, args: argparse.Namespace) -> None:
    """Create QoS specs (admin)."""
    utils.print_dict(gc.gc_qos.create(args.name, _specs_args(args), args.consumer),
                     args.json)


def do_qos_list(gc: Any, args: argparse.Namespace) -> None:
    """List QoS specs (admin)."""
    utils.print_list(gc.gc_qos.list(), LIST_COLUMNS, args.json)


@arg('specs', metavar='ID|NAME')
def do_qos_show(gc: Any, args: argparse.Namespace) -> None:
    """Show QoS specs and what they are associated with (admin)."""
    specs = find_resource(gc.gc_qos, args.specs)
    info = specs.to_dict()
    info['associations'] = list(gc.gc_qos.associations(specs))
    utils.print_dict(info, args.json)


@arg('specs', metavar='ID|NAME', nargs='+')
@arg('--force', action='store_true',
     help='Even while associated (their volumes lose these limits).')
def do_qos_delete(gc: Any, args: argparse.Namespace) -> None:
    """Delete QoS specs (admin)."""
    utils.for_each(args.specs, lambda s: gc.gc_qos.delete(find_resource(gc.gc_qos, s),
                                                          force=args.force),
                   'Unable to delete QoS specs')


@arg('specs', metavar='ID|NAME')
@arg('action', choices=['set', 'unset'])
@arg('keys', metavar='KEY[=VALUE]', nargs='+', help='KEY=VALUE to set; KEY to unset.')
def do_qos_key(gc: Any, args: argparse.Namespace) -> None:
    """Set or unset keys of QoS specs; the volumes they govern change at once (admin)."""
    specs = find_resource(gc.gc_qos, args.specs)
    if args.action == 'set':
        keys = dict(utils.key_values(args.keys, 'KEY=VALUE', parse_json=True))
        utils.print_dict(gc.gc_qos.set_keys(specs, keys), args.json)
    else:
        gc.gc_qos.unset_keys(specs, args.keys)


def _target(gc: Any, args: argparse.Namespace) -> tuple[str, Any]:
    if bool(args.volume) == bool(args.backend):
        raise exceptions.CommandError('Give --volume or --backend (one of them).')
    if args.volume:
        return 'volume', find_resource(gc.gc_volumes, args.volume)
    return 'backend', utils.backend_id(gc, args.backend)


@arg('specs', metavar='ID|NAME')
@arg('--volume', metavar='ID|NAME', help='The volume these specs govern.')
@arg('--backend', metavar='ID|NAME',
     help='The backend whose volumes (those without specs of their own) they govern.')
def do_qos_associate(gc: Any, args: argparse.Namespace) -> None:
    """Associate QoS specs with a volume or a backend (admin)."""
    kind, target = _target(gc, args)
    specs = find_resource(gc.gc_qos, args.specs)
    getattr(gc.gc_qos, 'associate_' + kind)(target, specs)
    if not args.json:
        sys.stdout.write(f'QoS specs {utils.label(specs)} now govern {kind} '
                         f'{base.getid(target)}.\n')


@arg('--volume', metavar='ID|NAME', help='Back to its backend\'s specs, if any.')
@arg('--backend', metavar='ID|NAME', help='Its volumes keep only their own specs.')
def do_qos_disassociate(gc: Any, args: argparse.Namespace) -> None:
    """Remove the QoS specs of a volume or a backend (admin)."""
    kind, target = _target(gc, args)
    getattr(gc.gc_qos, 'associate_' + kind)(target, None)
