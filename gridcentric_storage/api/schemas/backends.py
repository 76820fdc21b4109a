from gridcentric_storage.api.schemas import common

_MUTABLE = {
    'name': common.IDENTIFIER,
    'options': {'type': 'object'},
    'role': common.ROLE,
    'cost': {'type': 'integer', 'minimum': 0, 'maximum': 2 ** 31 - 1},
    'tags': common.TAGS,
    'availability_zone': common.AVAILABILITY_ZONE,
    'max_over_subscription_ratio': {'type': 'number', 'minimum': 1, 'maximum': 1000},
    'reserved_percentage': {'type': 'integer', 'minimum': 0, 'maximum': 100},
    # QoS specs of its volumes that have none of their own (null: none)
    'qos_specs_id': common.nullable(common.UUID),
}

create = common.envelope('backend', dict(
    _MUTABLE,
    driver={'type': 'string', 'minLength': 1, 'maxLength': 64},
    host=common.HOST,
    state={'type': 'string', 'enum': ['enabled', 'disabled']},
), required=['name', 'driver'])

update = common.envelope('backend', _MUTABLE)
update['properties']['backend']['minProperties'] = 1

action = {
    'type': 'object',
    'properties': {
        'enable': {'type': 'object', 'additionalProperties': False},
        'disable': {'type': 'object',
                    'properties': {'reason': {'type': 'string', 'maxLength': 255}},
                    'additionalProperties': False},
    },
    'minProperties': 1, 'maxProperties': 1, 'additionalProperties': False,
}
