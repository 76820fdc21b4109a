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
    'name': {'type': ['string', 'null'], 'maxLength': 255},
}, required=['server_id'])

_GUEST = {'type': 'object', 'maxProperties': 64,
          'propertyNames': {'pattern': r'^[A-Za-z0-9_.-]{1,64}$'},
          'additionalProperties': {'type': 'string', 'maxLength': 1024}}

launch_params = {
    'type': 'object',
    'properties': {
        'name': {'type': ['string', 'null'], 'maxLength': 255},
        'num_instances': {'type': 'integer', 'minimum': 1, 'maximum': 100},
        'user_data': {'type': ['string', 'null'], 'maxLength': 65535},
        'key_name': {'type': ['string', 'null'], 'maxLength': 255},
        'availability_zone': {'type': ['string', 'null'], 'maxLength': 255},
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
