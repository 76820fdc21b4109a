"""What the API answers and which query parameters it reads, for the OpenAPI document.

Request bodies are validated with the schemas next to this module; these
describe the other half of each operation. Response schemas name the types
of the fields a client relies on and require only the identifying ones:
views may grow fields (and members see fewer than administrators), so they
allow additional properties. Keyed by ``(controller, action)`` of
``router.ROUTES``; an operation missing here is published with a generic
object, so a new route never breaks the document.
"""

from typing import Any

from gridcentric_storage.api.schemas import common

STRING: dict[str, Any] = {'type': 'string'}
TEXT = common.nullable(STRING)
INTEGER: dict[str, Any] = {'type': 'integer'}
NUMBER = common.nullable({'type': 'number'})
BOOLEAN: dict[str, Any] = {'type': 'boolean'}
OBJECT: dict[str, Any] = {'type': 'object'}
TIME = TEXT  # "YYYY-MM-DDTHH:MM:SS.ffffff", null when unset
STRINGS: dict[str, Any] = {'type': 'array', 'items': STRING}


def record(required: tuple[str, ...] = ('id',), **properties: Any) -> dict[str, Any]:
    schema = {'type': 'object', 'properties': properties}
    if required:  # OpenAPI 3.0 wants a non-empty list or none
        schema['required'] = list(required)
    return schema


def wrapped(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {'type': 'object', 'required': [key], 'properties': {key: schema}}


def listed(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return wrapped(key, {'type': 'array', 'items': schema})


#: ``{"<faultName>": {"code": N, "message": "..."}}``, what novaclient parses.
FAULT = {'type': 'object', 'minProperties': 1, 'maxProperties': 1,
         'additionalProperties': record(('code', 'message'), code=INTEGER, message=STRING)}

_LINKS = {'type': 'array', 'items': record(('rel', 'href'), rel=STRING, href=STRING)}

BACKEND = record(
    ('id', 'name', 'driver'), id=STRING, name=STRING, driver=STRING, options=OBJECT,
    state=STRING, disabled_reason=TEXT, role=STRING, cost=INTEGER, tags=STRINGS,
    availability_zone=STRING, host=STRING, status={'type': 'string', 'enum': ['up', 'down']},
    total_capacity_gb=NUMBER, free_capacity_gb=NUMBER, provisioned_capacity_gb=NUMBER,
    max_over_subscription_ratio=NUMBER, reserved_percentage=INTEGER, capabilities=OBJECT,
    volume_count=INTEGER, created_at=TIME, updated_at=TIME, stats_updated_at=TIME,
    qos_specs_id=TEXT)

VOLUME = record(
    ('id', 'size', 'status'), id=STRING, name=TEXT, size=INTEGER, status=STRING,
    status_reason=TEXT, backend_id=TEXT, project_id=TEXT, user_id=TEXT,
    tags=STRINGS, source_volid=TEXT, snapshot_id=TEXT, image_id=TEXT, multiattach=BOOLEAN,
    host=TEXT, provider_location=TEXT, created_at=TIME, updated_at=TIME, qos_specs_id=TEXT,
    qos=common.nullable(record(('consumer', 'limits'), consumer=STRING, limits=OBJECT)),
    attachments={'type': 'array', 'items': record(
        ('id', 'status'), id=STRING, status=STRING, instance_uuid=TEXT, host=TEXT,
        device_path=TEXT)})

QOS_SPECS = record(('id', 'name', 'consumer', 'specs'), id=STRING, name=STRING,
                   consumer={'type': 'string', 'enum': ['back-end', 'front-end', 'both']},
                   specs=OBJECT, created_at=TIME, updated_at=TIME)

SNAPSHOT = record(
    ('id', 'volume_id', 'status'), id=STRING, name=TEXT, volume_id=STRING,
    volume_size=INTEGER, size=INTEGER, status=STRING, status_reason=TEXT, project_id=TEXT,
    created_at=TIME, updated_at=TIME)

ATTACHMENT = record(
    ('id', 'volume_id', 'status'), id=STRING, volume_id=STRING, host=TEXT,
    instance_uuid=TEXT, mode=STRING, status=STRING, status_reason=TEXT, device_path=TEXT,
    project_id=TEXT, connection_info=common.nullable(OBJECT), created_at=TIME)

CACHE_ENTRY = record(('id',), id=STRING, backend_id=TEXT, host=TEXT, created_at=TIME,
                     updated_at=TIME, last_used_at=TIME)

SERVER = record(
    ('id', 'name', 'status'), id=STRING, name=STRING, status=STRING, task_state=TEXT,
    fault=TEXT, host=TEXT, availability_zone=TEXT, memory_mb=INTEGER, vcpus=INTEGER,
    volume_id=TEXT, kernel=TEXT, initrd=TEXT, cmdline=TEXT, mac=TEXT, live_image_id=TEXT,
    launch_index=common.nullable(INTEGER), key_name=TEXT,
    guest=common.nullable({'type': 'object', 'additionalProperties': STRING}),
    project_id=TEXT, user_id=TEXT, created_at=TIME, updated_at=TIME)

LIVE_IMAGE = record(
    ('id', 'name', 'status', 'server_id'), id=STRING, name=STRING, status=STRING,
    status_reason=TEXT, server_id=STRING, host=TEXT, memory_mb=INTEGER, vcpus=INTEGER,
    project_id=TEXT, created_at=TIME, launch_anywhere=BOOLEAN, publish_status=STRING,
    publish_reason=TEXT)

VOLUME_ATTACHMENT = record(('id', 'volumeId'), id=STRING, volumeId=STRING, serverId=TEXT,
                           status=STRING, mode=STRING)

#: A server or a blessed live image in Nova's shape (Cobalt's dialect).
NOVA_SERVER = record(
    ('id', 'name', 'status'), id=STRING, name=STRING, status=STRING, tenant_id=TEXT,
    user_id=TEXT, metadata={'type': 'object', 'additionalProperties': STRING},
    key_name=TEXT, created=TIME, updated=TIME, hostId=STRING, addresses=OBJECT,
    links=_LINKS,
    flavor=record(('id', 'ram', 'vcpus'), id=STRING, links=_LINKS, ram=INTEGER,
                  vcpus=INTEGER),
    fault=common.nullable(record(('message',), message=TEXT)),
    **{'OS-EXT-STS:task_state': TEXT, 'OS-EXT-SRV-ATTR:host': TEXT,
       'OS-EXT-AZ:availability_zone': TEXT})

_VERSION = record(('id', 'status', 'links'), id=STRING, status=STRING, updated=STRING,
                  links=_LINKS)

#: Success bodies by (controller, action); None is "no body".
RESPONSES: dict[tuple[str, str], dict[str, Any] | None] = {
    ('versions', 'index'): listed('versions', _VERSION),
    ('versions', 'show'): wrapped('version', _VERSION),
    ('versions', 'openapi'): record(('openapi', 'info', 'paths'), openapi=STRING,
                                    info=OBJECT, paths=OBJECT),
    ('backends', 'index'): dict(listed('backends', BACKEND),
                                properties={'backends': {'type': 'array', 'items': BACKEND},
                                            'backends_links': _LINKS}),
    ('backends', 'create'): wrapped('backend', BACKEND),
    ('backends', 'show'): wrapped('backend', BACKEND),
    ('backends', 'update'): wrapped('backend', BACKEND),
    ('backends', 'delete'): None,
    ('backends', 'action'): wrapped('backend', BACKEND),
    ('volumes', 'index'): dict(listed('volumes', VOLUME),
                               properties={'volumes': {'type': 'array', 'items': VOLUME},
                                           'volumes_links': _LINKS}),
    ('volumes', 'create'): wrapped('volume', VOLUME),
    ('volumes', 'show'): wrapped('volume', VOLUME),
    ('volumes', 'delete'): None,
    ('volume_actions', 'action'): record((), **{'os-volume_upload_image': record(
        ('image_id',), id=STRING, image_id=STRING, image_name=STRING, disk_format=STRING,
        status=STRING, host=TEXT)}),
    ('volume_actions', 'upload'): wrapped('volume', record(('id', 'bytes_written'),
                                                           id=STRING,
                                                           bytes_written=INTEGER)),
    ('qos_specs', 'index'): listed('qos_specs', QOS_SPECS),
    ('qos_specs', 'create'): wrapped('qos_specs', QOS_SPECS),
    ('qos_specs', 'show'): wrapped('qos_specs', QOS_SPECS),
    ('qos_specs', 'update'): wrapped('qos_specs', QOS_SPECS),
    ('qos_specs', 'delete_keys'): None,
    ('qos_specs', 'delete'): None,
    ('qos_specs', 'associations'): listed('qos_associations', record(
        ('association_type', 'id'), association_type={'type': 'string',
                                                      'enum': ['backend', 'volume']},
        id=STRING, name=TEXT, project_id=TEXT)),
    ('snapshots', 'index'): listed('snapshots', SNAPSHOT),
    ('snapshots', 'create'): wrapped('snapshot', SNAPSHOT),
    ('snapshots', 'show'): wrapped('snapshot', SNAPSHOT),
    ('snapshots', 'delete'): None,
    ('attachments', 'index'): listed('attachments', ATTACHMENT),
    ('attachments', 'create'): wrapped('attachment', ATTACHMENT),
    ('attachments', 'show'): wrapped('attachment', ATTACHMENT),
    ('attachments', 'delete'): None,
    ('image_cache', 'index'): listed('image_cache', CACHE_ENTRY),
    ('image_cache', 'action'): record(('purged',), purged=INTEGER),
    ('image_cache', 'delete'): None,
    ('servers', 'index'): listed('servers', SERVER),
    ('servers', 'create'): wrapped('server', SERVER),
    ('servers', 'show'): wrapped('server', SERVER),
    ('servers', 'delete'): None,
    ('servers', 'action'): record(('output',), output=STRING),
    ('volume_attachments', 'index'): listed('volumeAttachments', VOLUME_ATTACHMENT),
    ('volume_attachments', 'create'): wrapped('volumeAttachment', VOLUME_ATTACHMENT),
    ('volume_attachments', 'delete'): None,
    ('live_images', 'index'): listed('live_images', LIVE_IMAGE),
    ('live_images', 'create'): wrapped('live_image', LIVE_IMAGE),
    ('live_images', 'show'): wrapped('live_image', LIVE_IMAGE),
    ('live_images', 'delete'): None,
    ('live_images', 'action'): listed('servers', SERVER),
    ('live_images', 'servers'): listed('servers', SERVER),
    # Cobalt's answers: a bare list of servers, or null (co_discard).
    ('nova', 'action'): {'type': 'array', 'items': NOVA_SERVER, 'nullable': True},
    ('nova', 'show'): wrapped('server', NOVA_SERVER),
    ('nova', 'delete'): None,
    ('nova', 'cobaltinfo'): record(('capabilities',), capabilities=STRINGS),
    ('images', 'index'): listed('images', record(
        ('name',), name=STRING, size=common.nullable(INTEGER), visibility=STRING,
        hosts=STRINGS)),
    ('images', 'delete'): None,
}


#: Other success codes of a route, with no body.
EXTRA_SUCCESS = {
    ('nova', 'action'): {'202': 'pause and unpause: accepted; no body'},
}

#: Success descriptions where one status code has two shapes. A response
#: without a body carries no Content-Type either.
DESCRIPTIONS = {
    ('volume_actions', 'action'): 'os-volume_upload_image answers the image it writes; '
                                  'os-extend, revert, os-force_detach and qos answer no body',
    ('nova', 'action'): 'co_bless, co_launch and co_list_*: a bare list of the servers '
                        'concerned; co_discard: null',
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {'name': name, 'in': 'query', 'required': False, 'schema': schema,
            'description': description}


_BOOL = {'type': 'string', 'enum': ['0', '1', 'true', 'false', 'yes', 'no', 'on', 'off']}
_ALL_TENANTS = [
    _query('all_tenants', _BOOL, "Every project's (a policy rule allows it; admins)."),
    _query('project_id', STRING, 'With all_tenants: only this project.'),
]


def _page(sort_keys: tuple[str, ...]) -> list[dict[str, Any]]:
    return [
        _query('limit', {'type': 'integer', 'minimum': 1},
               'At most this many (capped by [api] max_limit).'),
        _query('marker', STRING, 'Start after this id (from the previous page).'),
        _query('sort_key', {'type': 'string', 'enum': list(sort_keys)}, 'Sort by.'),
        _query('sort_dir', {'type': 'string', 'enum': ['asc', 'desc']}, 'Sort order.'),
    ]


_BACKEND_SORT = ('created_at', 'name', 'cost', 'free_capacity_gb', 'total_capacity_gb',
                 'driver', 'state', 'role', 'host', 'availability_zone')

#: Query parameters by (controller, action).
QUERY: dict[tuple[str, str], list[dict[str, Any]]] = {
    ('backends', 'index'): [
        _query('name', STRING, 'Only the backend of this name.'),
        _query('driver', STRING, 'Only backends of this driver.'),
        _query('state', {'type': 'string', 'enum': ['enabled', 'disabled']}, 'By state.'),
        _query('status', {'type': 'string', 'enum': ['up', 'down']}, 'By status.'),
        _query('role', common.ROLE, 'By role.'),
        _query('host', STRING, 'Only backends of this compute host.'),
        _query('availability_zone', STRING, 'By availability zone.'),
        dict(_query('tag', {'type': 'array', 'items': STRING},
                    'Only backends with all these tags.'), style='form', explode=True),
    ] + _page(_BACKEND_SORT),
    ('volumes', 'index'): _ALL_TENANTS + [
        _query('name', STRING, 'Only volumes of this name.'),
        _query('status', STRING, 'Only volumes in this status.'),
        _query('backend_id', STRING, 'Only volumes on this backend.'),
    ] + _page(('created_at', 'name', 'size', 'status')),
    ('volumes', 'delete'): [
        _query('cascade', _BOOL, 'Delete its snapshots too.'),
        _query('force', _BOOL, 'Even while attached (a policy rule allows it; admins).'),
    ],
    ('snapshots', 'index'): _ALL_TENANTS + [
        _query('volume_id', STRING, 'Only snapshots of this volume.')],
    ('attachments', 'index'): _ALL_TENANTS + [
        _query('volume_id', STRING, 'Only attachments of this volume.')],
    ('image_cache', 'index'): [_query('backend_id', STRING, 'Only this backend\'s cache.')],
    ('qos_specs', 'index'): [_query('name', STRING, 'Only the specs of this name.')],
    ('qos_specs', 'delete'): [_query('force', _BOOL, 'Even while associated (they are '
                                                     'disassociated).')],
    ('servers', 'index'): list(_ALL_TENANTS),
    ('live_images', 'index'): _ALL_TENANTS + [
        _query('server_id', STRING, 'Only live images blessed from this server.')],
}
