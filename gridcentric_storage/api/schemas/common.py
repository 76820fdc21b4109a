NAME = {'type': 'string', 'minLength': 1, 'maxLength': 255,
        'pattern': r'^[A-Za-z0-9][A-Za-z0-9._ -]*$'}
UUID = {'type': 'string', 'format': 'uuid',
        'pattern': r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?'
                   r'[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}
TAG = {'type': 'string', 'minLength': 1, 'maxLength': 64, 'pattern': r'^[A-Za-z0-9._:-]+$'}
TAGS = {'type': 'array', 'items': TAG, 'uniqueItems': True, 'maxItems': 64}
ROLE = {'type': 'string', 'enum': ['san', 'repository']}
AVAILABILITY_ZONE = {'type': 'string', 'minLength': 1, 'maxLength': 255}
HOST = {'type': 'string', 'minLength': 1, 'maxLength': 255,
        'pattern': r'^[A-Za-z0-9][A-Za-z0-9._-]*$'}
EXPRESSION = {'type': 'string', 'minLength': 1, 'maxLength': 1024}


def envelope(key: str, properties: dict, required: list[str] | None = None) -> dict:
    inner: dict = {'type': 'object', 'properties': properties,
                   'additionalProperties': False}
    if required:
        inner['required'] = required
    return {'type': 'object', 'properties': {key: inner}, 'required': [key],
            'additionalProperties': False}
