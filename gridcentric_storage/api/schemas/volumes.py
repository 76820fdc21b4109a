from gridcentric_storage.api.schemas import common, qos_specs

create = common.envelope('volume', {
    'size': {'type': 'integer', 'minimum': 1, 'maximum': 65536},
    'name': common.OPTIONAL_NAME,
    'backend_id': common.UUID,
    'tags': common.TAGS,
    'role': common.ROLE,
    'availability_zone': common.AVAILABILITY_ZONE,
    'capabilities': {'type': 'object',
                     'additionalProperties': {'type': ['string', 'number', 'boolean']}},
    'requirements': common.EXPRESSION,
    'rank': common.EXPRESSION,
    'source_volid': common.UUID,
    'snapshot_id': common.UUID,
    'imageRef': {'type': 'string', 'minLength': 1, 'maxLength': 1024,
                 'description': 'Name of an image in the image store (the project\'s or '
                                'a public one); administrators may give an absolute '
                                'path under [image] allowed_paths.'},
    'multiattach': {'type': 'boolean'},
})

_SIZE = {'type': 'integer', 'minimum': 1, 'maximum': 65536}
_BACKEND_REF = {'type': 'string', 'minLength': 1, 'maxLength': 255}
#: What a migration without a named backend gives the scheduler (as a create).
MIGRATE_PLACEMENT = ('tags', 'role', 'availability_zone', 'capabilities', 'requirements',
                     'rank')

action = {
    'type': 'object',
    'properties': {
        'os-extend': {'type': 'object', 'properties': {'new_size': _SIZE},
                      'required': ['new_size'], 'additionalProperties': False},
        'revert': {'type': 'object', 'properties': {'snapshot_id': common.UUID},
                   'required': ['snapshot_id'], 'additionalProperties': False},
        'os-force_detach': {'type': 'object',
                            'properties': {'attachment_id': common.UUID,
                                           'connector': {'type': ['object', 'null']}},
                            'additionalProperties': False},
        'os-volume_upload_image': {
            'type': 'object',
            'properties': {'image_name': {'type': 'string', 'minLength': 1,
                                          'maxLength': 255,
                                          'pattern': r'^[A-Za-z0-9][A-Za-z0-9._-]*$'},
                           'disk_format': {'type': 'string', 'enum': ['raw', 'qcow2']},
                           'force': {'type': 'boolean'}},
            'required': ['image_name'], 'additionalProperties': False},
        'qos': qos_specs.volume_action,
        'migrate': {
            'type': 'object',
            'properties': dict({'backend': _BACKEND_REF, 'force_host_copy': {'type': 'boolean'}},
                               **{k: create['properties']['volume']['properties'][k]
                                  for k in MIGRATE_PLACEMENT}),
            'additionalProperties': False},
        'os-migrate_volume': {
            'type': 'object',
            'properties': {'host': _BACKEND_REF, 'force_host_copy': {'type': 'boolean'},
                           'lock_volume': {'type': 'boolean'}},
            'required': ['host'], 'additionalProperties': False},
    },
    'minProperties': 1, 'maxProperties': 1, 'additionalProperties': False,
}
