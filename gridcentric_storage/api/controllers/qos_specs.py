"""/v1/qos-specs: named I/O limits (Cinder's qos-specs API shape; admin only).

Specs govern a volume through the volume action ``{"qos": {"qos_specs_id": ...}}``
or, for the volumes with none of their own, through their backend's
``qos_specs_id``. Any change (keys, consumer, an association, a delete) is
enforced at once on the volumes it governs: their owner hosts re-apply the
back-end limits and tell the hypervisors of the servers using them.
"""

import uuid
from typing import Any

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.schemas import qos_specs as schema
from gridcentric_storage.common import exception
from gridcentric_storage.db import qos as db_qos
from gridcentric_storage.db.records import QosSpecs
from gridcentric_storage.volume import api as volume_api
from gridcentric_storage.volume import qos


def view(specs: QosSpecs) -> dict[str, Any]:
    return {'id': specs['id'], 'name': specs['name'], 'consumer': specs['consumer'],
            'specs': dict(specs['specs']), 'created_at': common.isotime(specs['created_at']),
            'updated_at': common.isotime(specs['updated_at'])}


class QosSpecsController:
    volumes = volume_api.API()

    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'qos:get_all')
        return {'qos_specs': [view(s) for s in db_qos.qos_specs_get_all(req.GET.get('name'))]}

    def show(self, req: Any, id: str) -> dict[str, Any]:
        policy.authorize(req.context, 'qos:get')
        return {'qos_specs': view(db_qos.qos_specs_get(id))}

    def associations(self, req: Any, id: str) -> dict[str, Any]:
        """Cinder's ``qos_associations`` list, of backends and volumes."""
        policy.authorize(req.context, 'qos:get')
        db_qos.qos_specs_get(id)
        found = db_qos.associations(id)
        return {'qos_associations': [
            dict(item, association_type=kind.rstrip('s'))
            for kind in ('backends', 'volumes') for item in found[kind]]}

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> dict[str, Any]:
        policy.authorize(req.context, 'qos:create')
        data = dict(body['qos_specs'])
        name = data.pop('name')
        consumer = data.pop('consumer', qos.DEFAULT_CONSUMER)
        specs = db_qos.qos_specs_create({'id': str(uuid.uuid4()), 'name': name,
                                         'consumer': consumer,
                                         'specs': qos.validate_specs(data)})
        return {'qos_specs': view(specs)}

    def _changed(self, req: Any, specs_id: str, values: dict[str, Any]) -> dict[str, Any]:
        specs = db_qos.qos_specs_update(specs_id, values)
        self.volumes.apply_qos(req.context, db_qos.governed_volumes(specs_id))
        return {'qos_specs': view(specs)}

    @validation.body(schema.update)
    def update(self, req: Any, id: str, body: dict[str, Any]) -> dict[str, Any]:
        """Set keys (and the consumer); the other keys stay."""
        policy.authorize(req.context, 'qos:update')
        current = db_qos.qos_specs_get(id)
        data = dict(body['qos_specs'])
        values: dict[str, Any] = {'consumer': data.pop('consumer', current['consumer'])}
        merged = dict(current['specs'], **data)
        for key in data:
            # a fixed limit replaces a per-GB one and back (not "give both")
            if key.endswith('_per_gb'):
                merged.pop(key[:-len('_per_gb')], None)
            elif key in qos.LIMIT_KEYS:
                merged.pop(key + '_per_gb', None)
                merged.pop(key + '_per_gb_min', None)
        values['specs'] = qos.validate_specs(merged)
        return self._changed(req, id, values)

    @validation.body(schema.delete_keys)
    def delete_keys(self, req: Any, id: str, body: dict[str, Any]) -> tuple[int, None]:
        policy.authorize(req.context, 'qos:update')
        current = db_qos.qos_specs_get(id)
        missing = sorted(set(body['keys']) - set(current['specs']))
        if missing:
            raise exception.InvalidQosSpecs(reason='no key(s) %s in these specs'
                                            % ', '.join(missing))
        specs = {k: v for k, v in current['specs'].items() if k not in body['keys']}
        self._changed(req, id, {'specs': qos.validate_specs(specs)})
        return 202, None

    def delete(self, req: Any, id: str) -> tuple[int, None]:
        policy.authorize(req.context, 'qos:delete')
        governed = db_qos.governed_volumes(id)
        db_qos.qos_specs_destroy(id, force=validation.query_bool(req, 'force'))
        self.volumes.apply_qos(req.context, governed)
        return 202, None
