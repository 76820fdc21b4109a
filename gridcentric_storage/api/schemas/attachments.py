from gridcentric_storage.api.schemas import common

create = common.envelope('attachment', {
    'volume_id': common.UUID,
    'host': common.HOST,
    'instance_uuid': common.UUID,
    'mode': {'type': 'string', 'enum': ['rw', 'ro']},
}, required=['volume_id'])

image_cache_action = {
    'type': 'object',
    'properties': {'purge': {'type': 'object',
                             'properties': {'backend_id': common.UUID},
                             'additionalProperties': False}},
    'required': ['purge'], 'additionalProperties': False,
}
