from gridcentric_storage.api.schemas import common

create = common.envelope('volume', {
    'size': {'type': 'integer', 'minimum': 1, 'maximum': 65536},
    'name': {'type': ['string', 'null'], 'maxLength': 255},
    'backend_id': common.UUID,
    'tags': common.TAGS,
    'role': common.ROLE,
    'availability_zone': common.AVAILABILITY_ZONE,
    'capabilities': {'type': 'object',
                     'additionalProperties': {'type': ['string', 'number', 'boolean']}},
    'requirements': common.EXPRESSION,
    'rank': common.EXPRESSION,
}, required=['size'])
