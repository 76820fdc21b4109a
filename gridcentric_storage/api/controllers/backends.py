"""/v1/backends: the storage backend pool (admin only)."""

import uuid
from typing import Any

import oslo_messaging as messaging
from oslo_config import cfg

from gridcentric_storage.api import policy, validation
from gridcentric_storage.api.controllers import common
from gridcentric_storage.api.schemas import backends as schema
from gridcentric_storage.common import exception, rpc
from gridcentric_storage.db import api as db
from gridcentric_storage.db import qos as db_qos
from gridcentric_storage.db.records import Backend
from gridcentric_storage.volume import api as volume_api
from gridcentric_storage.volume import drivers
from gridcentric_storage.volume import rpcapi as volume_rpcapi

CONF = cfg.CONF
SECRET_MASK = '***'
_SORT_KEYS = ('created_at', 'name', 'cost', 'free_capacity_gb', 'total_capacity_gb',
              'driver', 'state', 'role', 'host', 'availability_zone')
_FILTERS = ('name', 'driver', 'state', 'status', 'role', 'host', 'availability_zone', 'tag')
_TIMESTAMPS = ('created_at', 'updated_at', 'stats_updated_at')


def _mask(driver: str, options: dict[str, Any]) -> dict[str, Any]:
    try:
        secret = drivers.get_driver_class(driver).SECRET_OPTIONS
    except exception.UnknownDriver:
        return {key: SECRET_MASK for key in options}  # cannot tell: hide all
    return {k: (SECRET_MASK if k in secret else v) for k, v in options.items()}


def view(backend: Backend) -> dict[str, Any]:
    result: dict[str, Any] = dict(backend)
    result['options'] = _mask(backend['driver'], backend['options'])
    for key in _TIMESTAMPS:
        result[key] = common.isotime(result[key])
    return result


def validated_options(driver: str, backend_id: str, options: dict[str, Any]
                      ) -> dict[str, Any]:
    cls = drivers.get_driver_class(driver)
    merged = dict(cls.default_options(backend_id, CONF.state_path))
    merged.update(options)
    try:
        validation.validate(merged, cls.OPTIONS_SCHEMA)
    except exception.Invalid as e:
        raise exception.InvalidDriverOptions(driver=driver, reason=e.kwargs['reason'])
    return merged


class BackendsController:
    rpcapi = rpc.LazyClient(volume_rpcapi.VolumeAPI)
    volumes = volume_api.API()

    def index(self, req: Any) -> dict[str, Any]:
        policy.authorize(req.context, 'backend:get_all')
        filters: dict[str, Any] = {key: req.GET[key] for key in _FILTERS if key in req.GET}
        if 'tag' in req.GET:
            filters['tag'] = req.GET.getall('tag')
        validation.query_choice(req, 'state', ('enabled', 'disabled'))
        validation.query_choice(req, 'status', ('up', 'down'))
        page = common.pagination(req, _SORT_KEYS)
        items = [view(b) for b in db.backend_get_all(filters=filters, **page)]
        result: dict[str, Any] = {'backends': items}
        links = common.next_links(req, 'backends', items, page['limit'])
        if links:
            result['backends_links'] = links
        return result

    def show(self, req: Any, id: str) -> dict[str, Any]:
        policy.authorize(req.context, 'backend:get')
        return {'backend': view(db.backend_get(id))}

    def _pick_host(self, requested: str | None) -> str:
        services = db.service_get_all(topic=CONF.compute.topic, up_only=True)
        hosts = [s['host'] for s in services]
        if requested is not None:
            if requested not in hosts:
                raise exception.Invalid(
                    reason='no compute service is up on host %s (up: %s)'
                    % (requested, ', '.join(hosts) or 'none'))
            return requested
        if not hosts:
            raise exception.NoComputeService(reason='no service has reported in the last '
                                             '%d s' % CONF.compute.service_down_time)
        load = {host: 0 for host in hosts}
        for backend in db.backend_get_all():
            if backend['host'] in load:
                load[backend['host']] += 1
        return min(hosts, key=lambda host: (load[host], host))

    def _setup_on_host(self, req: Any, backend: Backend, method: str) -> None:
        try:
            getattr(self.rpcapi, method)(req.context, backend['host'], backend['id'])
        except messaging.MessagingTimeout:
            raise exception.ServiceUnavailable(
                reason='compute service on %s did not answer within %d s'
                % (backend['host'], CONF.compute.rpc_call_timeout))

    @validation.body(schema.create)
    def create(self, req: Any, body: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        policy.authorize(req.context, 'backend:create')
        data = body['backend']
        backend_id = str(uuid.uuid4())
        values = {
            'id': backend_id, 'name': data['name'], 'driver': data['driver'],
            'options': validated_options(data['driver'], backend_id, data.get('options', {})),
            'state': data.get('state', 'enabled'), 'role': data.get('role', 'san'),
            'cost': data.get('cost', 0), 'tags': data.get('tags', []),
            'availability_zone': data.get('availability_zone',
                                          CONF.default_availability_zone),
            'host': self._pick_host(data.get('host')),
            'max_over_subscription_ratio': data.get('max_over_subscription_ratio'),
            'reserved_percentage': data.get('reserved_percentage', 0),
            'capabilities': {},
            'qos_specs_id': self._qos_specs(data.get('qos_specs_id')),
        }
        backend = db.backend_create(values)
        try:
            self._setup_on_host(req, backend, 'setup_backend')
        except Exception:
            # Nothing half-created: a backend its host cannot drive is not kept.
            db.backend_destroy(backend_id)
            raise
        return 201, {'backend': view(db.backend_get(backend_id))}

    @validation.body(schema.update)
    def update(self, req: Any, id: str, body: dict[str, Any]) -> dict[str, Any]:
        policy.authorize(req.context, 'backend:update')
        before = db.backend_get(id)
        values = dict(body['backend'])
        if 'options' in values:
            values['options'] = self._changed_options(before, values['options'])
        if 'qos_specs_id' in values:
            self._qos_specs(values['qos_specs_id'])
        backend = db.backend_update(id, values)
        if values.get('qos_specs_id', before['qos_specs_id']) != before['qos_specs_id']:
            self.volumes.apply_qos(req.context, db_qos.governed_volumes(backend_id=id))
        if 'options' in values and values['options'] != before['options']:
            try:
                self._setup_on_host(req, backend, 'update_backend')
            except Exception:
                db.backend_update(id, {'options': before['options']})
                raise
        return {'backend': view(db.backend_get(id))}

    @staticmethod
    def _qos_specs(specs_id: str | None) -> str | None:
        if specs_id is not None:
            db_qos.qos_specs_get(specs_id)      # QosSpecsNotFound: a 404 names it
        return specs_id

    @staticmethod
    def _changed_options(before: Backend, given: dict[str, Any]) -> dict[str, Any]:
        """``given`` over the current options, as a change, not a replacement.

        Options left out keep their values, and a masked secret sent back as
        it was shown keeps the real one: otherwise an update of one option
        would silently move the backend to its default location.
        """
        given = {k: v for k, v in given.items() if v != SECRET_MASK}
        options = validated_options(before['driver'], before['id'],
                                    dict(before['options'], **given))
        location = drivers.get_driver_class(before['driver']).LOCATION_OPTIONS
        moved = sorted(k for k in location if options.get(k) != before['options'].get(k))
        if moved and before['volume_count']:
            raise exception.Conflict(reason='backend %s holds %d volume(s); %s cannot change '
                                     'under them' % (before['name'], before['volume_count'],
                                                     ', '.join(moved)))
        return options

    def delete(self, req: Any, id: str) -> None:
        policy.authorize(req.context, 'backend:delete')
        backend = db.backend_get(id)
        db.backend_destroy(id)
        try:
            self.rpcapi.remove_backend(req.context, backend['host'], id)
        except messaging.MessagingException:
            pass  # the host drops unknown backends at its next report anyway

    @validation.body(schema.action)
    def action(self, req: Any, id: str, body: dict[str, Any]) -> dict[str, Any]:
        policy.authorize(req.context, 'backend:action')
        if 'enable' in body:
            values = {'state': 'enabled', 'disabled_reason': None}
        else:
            values = {'state': 'disabled',
                      'disabled_reason': body['disable'].get('reason')}
        return {'backend': view(db.backend_update(id, values))}
