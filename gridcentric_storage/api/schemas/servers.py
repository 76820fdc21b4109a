from typing import Any

from gridcentric_storage.api.schemas import common

# An image of the store by name; administrators may give an absolute path under
# [image] allowed_paths (gridcentric_storage.image.store decides, with a 403 or 400).
_BOOT_FILE = {'type': 'string', 'minLength': 1, 'maxLength': 1024,
              'description': 'Name of an image in the image store (the project\'s or a '
                             'public one); administrators may give an absolute path '
                             'under [image] allowed_paths.'}

create = common.envelope('server', {
    'id': common.UUID,
    'name': common.NAME,
    'memory_mb': {'type': 'integer', 'minimum': 16, 'maximum': 1048576},
    'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 256},
    'volume_id': common.UUID,
    'kernel': _BOOT_FILE,
    'initrd': _BOOT_FILE,
    'cmdline': {'type': 'string', 'maxLength': 2048},
    'availability_zone': common.AVAILABILITY_ZONE,
}, required=['name', 'memory_mb'])

action = {
    'type': 'object',
    'properties': {'os-getConsoleOutput': {
        'type': 'object',
        'properties': {'length': {'type': ['integer', 'null'], 'minimum': -1}},
        'additionalProperties': False}},
    'required': ['os-getConsoleOutput'], 'additionalProperties': False,
}

bless = common.envelope('live_image', {
    'server_id': common.UUID,
    'name': common.OPTIONAL_NAME,
}, required=['server_id'])

# Guest parameters reach the clone as "key=value" lines: no line breaks or
# other control characters but tab.
_GUEST = {'type': 'object', 'maxProperties': 64,
          'propertyNames': {'pattern': r'^[A-Za-z0-9_.-]{1,64}$'},
          'additionalProperties': {'type': 'string', 'maxLength': 1024,
                                   'pattern': r'^[^\x00-\x08\x0a-\x1f\x7f-\x9f'
                                              r'\u2028\u2029]*$'}}

launch_params = {
    'type': 'object',
    'properties': {
        'name': common.OPTIONAL_NAME,
        'num_instances': {'type': 'integer', 'minimum': 1, 'maximum': 100},
        'user_data': {'type': ['string', 'null'], 'maxLength': 65535},
        'key_name': common.OPTIONAL_NAME,
        'availability_zone': common.OPTIONAL_NAME,
        'scheduler_hints': {'type': 'object'},
        'guest': _GUEST,
        'params': _GUEST,
        'networks': {'type': 'array', 'items': {'type': 'object'}},
        'security_groups': {'type': 'array'},
    },
    'additionalProperties': False,
}

live_image_action = {
    'type': 'object', 'properties': {'launch': launch_params},
    'required': ['launch'], 'additionalProperties': False,
}

volume_attach = common.envelope('volumeAttachment', {
    'volumeId': common.UUID,
    'mode': {'type': 'string', 'enum': ['rw', 'ro']},
}, required=['volumeId'])

# Cobalt's server actions (POST /v2.1/servers/{id}/action), spelled co_* or
# gc_*. The arguments are checked before anything is read or written; Cobalt's
# clients send null for a verb without arguments.
_NO_ARGUMENTS = {'type': ['object', 'null'], 'properties': {}, 'additionalProperties': False}
#: Cobalt's clients send security_groups null, and the older gridcentric
#: client a "target" ("0") that named the memory target; both are accepted.
_cobalt_launch: dict[str, Any] = {**launch_params, 'properties': {
    **launch_params['properties'],  # type: ignore[dict-item]
    'security_groups': {'type': ['array', 'null']},
    'target': {'type': ['string', 'null'], 'maxLength': 64}}}
_COBALT_VERBS = {
    'bless': {'type': ['object', 'null'], 'properties': {'name': common.OPTIONAL_NAME},
              'additionalProperties': False},
    'launch': common.nullable(_cobalt_launch),
    'discard': _NO_ARGUMENTS,
    'list_launched': _NO_ARGUMENTS,
    'list_blessed': _NO_ARGUMENTS,
    'export': _NO_ARGUMENTS,
    'migrate': {'type': ['object', 'null'], 'properties': {'dest': common.OPTIONAL_NAME},
                'additionalProperties': False},
}
#: Schema of the whole body of each action, by its name ("co_bless", "gc_bless", ...).
cobalt_actions = {
    prefix + verb: {'type': 'object', 'properties': {prefix + verb: arguments},
                    'required': [prefix + verb], 'additionalProperties': False}
    for verb, arguments in _COBALT_VERBS.items() for prefix in ('co_', 'gc_')
}
#: Nova's own server actions the dialect serves (on clones and servers alike).
nova_actions = {
    verb: {'type': 'object', 'properties': {verb: _NO_ARGUMENTS},
           'required': [verb], 'additionalProperties': False}
    for verb in ('pause', 'unpause')
}
#: What co_export answers and co-import-server takes back as ``data``: the
#: blessed server's fields, its metadata, the export's checksum, and the image.
_SIZE = {'type': 'integer', 'minimum': 1, 'maximum': 4194304}
export_document = {
    'type': 'object',
    'properties': {
        'fields': {'type': 'object', 'properties': {
            'id': common.UUID, 'name': common.NAME,
            'memory_mb': _SIZE, 'vcpus': {'type': 'integer', 'minimum': 1, 'maximum': 1024},
            # an export of a Nova instance's live image: what its clones boot with
            'flavor_id': {'type': 'string', 'pattern': r'^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$'},
            'image_id': common.UUID},
            'required': ['id', 'name', 'memory_mb', 'vcpus'], 'additionalProperties': False},
        'metadata': {'type': 'object', 'properties': {'blessed_from': common.UUID},
                     'additionalProperties': False},
        'system_metadata': {'type': 'object', 'properties': {
            'export_format': {'type': 'string', 'enum': ['gridcentric-live-image/1']},
            'export_sha256': {'type': 'string', 'pattern': '^[0-9a-f]{64}$'},
            'export_size': {'type': 'integer', 'minimum': 1}},
            'required': ['export_format', 'export_sha256'], 'additionalProperties': False},
        'flavor_name': {'type': 'string', 'maxLength': 255},
        'export_image_id': {'type': 'string', 'pattern': r'^[A-Za-z0-9][A-Za-z0-9._-]{0,254}$'},
    },
    'required': ['fields', 'system_metadata', 'export_image_id'],
    'additionalProperties': False,
}
cobalt_import = {'type': 'object', 'properties': {'data': export_document},
                 'required': ['data'], 'additionalProperties': False}
cobalt_action = {'oneOf': list(cobalt_actions.values()) + list(nova_actions.values())}
