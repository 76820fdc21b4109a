# Characters no name may hold: C0 and C1 controls and DEL, line and paragraph
# separators, lone surrogates. A name reaches a clone's identity data as one
# "name=..." line, logs and terminals: a newline there would inject a line.
_UNPRINTABLE = r'\x00-\x1f\x7f-\x9f\u2028\u2029\ud800-\udfff'
#: Nova's rule for user-given names (its parameter_types.name): printable
#: characters only, no leading or trailing whitespace, at most 255 of them.
#: Written without look-arounds so that every regex dialect (ECMA 262 for
#: OpenAPI tools, Python's re for jsonschema) reads it alike.
NAME_PATTERN = r'^(?:[^\s%s](?:[^%s]*[^\s%s])?)?$' % (_UNPRINTABLE, _UNPRINTABLE,
                                                       _UNPRINTABLE)
NAME = {'type': 'string', 'minLength': 1, 'maxLength': 255, 'pattern': NAME_PATTERN}
#: Names that are also identifiers in CLIs and expressions (backends).
IDENTIFIER = {'type': 'string', 'minLength': 1, 'maxLength': 255,
              'pattern': r'^[A-Za-z0-9][A-Za-z0-9._ -]*$'}
UUID = {'type': 'string', 'format': 'uuid',
        'pattern': r'^[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?'
                   r'[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}$'}
TAG = {'type': 'string', 'minLength': 1, 'maxLength': 64, 'pattern': r'^[A-Za-z0-9._:-]+$'}
TAGS = {'type': 'array', 'items': TAG, 'uniqueItems': True, 'maxItems': 64}
ROLE = {'type': 'string', 'enum': ['san', 'repository']}
AVAILABILITY_ZONE = NAME
HOST = {'type': 'string', 'minLength': 1, 'maxLength': 255,
        'pattern': r'^[A-Za-z0-9][A-Za-z0-9._-]*$'}
EXPRESSION = {'type': 'string', 'minLength': 1, 'maxLength': 1024}


def nullable(schema: dict) -> dict:
    """``schema`` or JSON null (published as OpenAPI 3.0's ``nullable``)."""
    types = schema['type'] if isinstance(schema['type'], list) else [schema['type']]
    return dict(schema, type=types + ['null'])


#: A name that may be left out as null or "" (the server picks one or none).
OPTIONAL_NAME = nullable({'type': 'string', 'maxLength': 255, 'pattern': NAME_PATTERN})


def envelope(key: str, properties: dict, required: list[str] | None = None) -> dict:
    inner: dict = {'type': 'object', 'properties': properties,
                   'additionalProperties': False}
    if required:
        inner['required'] = required
    return {'type': 'object', 'properties': {key: inner}, 'required': [key],
            'additionalProperties': False}
