from gridcentric_storage.api.schemas import common
from gridcentric_storage.volume import qos

#: A limit as Cinder sends it (a string) or as a JSON number; volume.qos checks it.
_VALUE = {'type': ['string', 'number'], 'maxLength': 32}
_CONSUMER = {'type': 'string', 'enum': list(qos.CONSUMERS)}
_KEY_NAMES = {'type': 'string', 'enum': list(qos.SPEC_KEYS)}

create = {
    'type': 'object',
    'properties': {'qos_specs': {
        'type': 'object',
        'properties': {'name': common.NAME, 'consumer': _CONSUMER},
        'additionalProperties': _VALUE,
        'propertyNames': {'pattern': '^[a-z_]{1,64}$'},
        'required': ['name']}},
    'required': ['qos_specs'], 'additionalProperties': False,
}

#: PUT /v1/qos-specs/{id}: keys to set (and the consumer), as Cinder's.
update = {
    'type': 'object',
    'properties': {'qos_specs': {
        'type': 'object', 'properties': {'consumer': _CONSUMER},
        'additionalProperties': _VALUE, 'minProperties': 1,
        'propertyNames': {'pattern': '^[a-z_]{1,64}$'}}},
    'required': ['qos_specs'], 'additionalProperties': False,
}

delete_keys = {
    'type': 'object',
    'properties': {'keys': {'type': 'array', 'items': _KEY_NAMES, 'minItems': 1,
                            'uniqueItems': True}},
    'required': ['keys'], 'additionalProperties': False,
}

#: The volume action ``{"qos": {"qos_specs_id": <id> | null}}`` (null: the backend's).
volume_action = {'type': 'object', 'properties': {'qos_specs_id': common.nullable(common.UUID)},
                 'required': ['qos_specs_id'], 'additionalProperties': False}
