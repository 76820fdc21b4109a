"""JSON-schema validation of request bodies and query strings."""

import functools
import math
import re
from collections.abc import Callable, Iterator
from typing import Any

import jsonschema
import jsonschema.validators

from gridcentric_storage.api.schemas import common
from gridcentric_storage.common import exception


@functools.cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # Schema patterns are ECMA 262 regexes, where a final "$" is the end of
    # input; Python's "$" also matches before a final newline, which let
    # "name\n" through every "^...$" pattern.
    if pattern.endswith('$') and not pattern.endswith('\\$'):
        pattern = pattern[:-1] + r'\Z'
    return re.compile(pattern)


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any
             ) -> Iterator[jsonschema.ValidationError]:
    if validator.is_type(instance, 'string') and not _compiled(pattern).search(instance):
        if pattern == common.NAME_PATTERN:
            yield jsonschema.ValidationError(
                '%r is not a valid name: printable characters only (no control '
                'characters or line breaks), without leading or trailing spaces'
                % instance)
        else:
            yield jsonschema.ValidationError('%r does not match %r' % (instance, pattern))


_Validator = jsonschema.validators.extend(jsonschema.Draft7Validator, {'pattern': _pattern})


def _message(error: jsonschema.ValidationError) -> str:
    path = '/'.join(str(p) for p in error.absolute_path)
    if error.validator == 'additionalProperties':
        return error.message
    if path:
        return '%s: %s' % (path, error.message)
    return error.message


def validate(instance: Any, schema: dict[str, Any]) -> None:
    validator = _Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise exception.Invalid(reason=_message(errors[0]))


#: JSON nesting deeper than any request schema needs; a deeper document is
#: refused before anything recurses over it (validators, the DB's JSON columns).
MAX_DEPTH = 32


def check_document(document: Any) -> None:
    """Refuse what json.loads accepts but nothing after it can store or echo.

    Lone surrogates (``"\\ud800"``) cannot be encoded as UTF-8 and NUL
    cannot be stored in PostgreSQL text, so both fail far from the request
    (in the DB or in a guest file) unless they are caught here; NaN and
    Infinity are refused by the parser (``parse_constant``). Iterative, so a
    deep document cannot exhaust the stack here either.
    """
    stack: list[tuple[Any, int]] = [(document, 1)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, str):
            _check_string(value)
        elif isinstance(value, float) and not math.isfinite(value):
            raise exception.Invalid(reason='numbers must be finite, not %r' % value)
        elif isinstance(value, (dict, list)):
            if depth > MAX_DEPTH:
                raise exception.Invalid(reason='the JSON body nests deeper than %d levels'
                                        % MAX_DEPTH)
            if isinstance(value, dict):
                for key in value:
                    _check_string(key)
                items = list(value.values())
            else:
                items = value
            stack.extend((item, depth + 1) for item in items)


def _check_string(value: str) -> None:
    if '\0' in value:
        raise exception.Invalid(reason='strings cannot hold a NUL (\\u0000) character')
    try:
        value.encode('utf-8')
    except UnicodeEncodeError:
        raise exception.Invalid(reason='strings cannot hold a lone surrogate (%s)'
                                % ascii(value[:64]))


def body(schema: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Validate the JSON body against ``schema``; the method gets it as ``body``."""

    def decorator(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def wrapper(self: Any, req: Any, **kwargs: Any) -> Any:
            data = req.json_body_or_400()
            validate(data, schema)
            return fn(self, req, body=data, **kwargs)

        wrapper.request_schema = schema  # type: ignore[attr-defined]
        return wrapper

    return decorator


def query_int(req: Any, name: str, minimum: int = 0, maximum: int | None = None
              ) -> int | None:
    raw = req.GET.get(name)
    if raw is None:
        return None
    try:
        value = int(raw)
    except ValueError:
        raise exception.ValidationError(field=name, reason='%r is not an integer' % raw)
    if value < minimum or (maximum is not None and value > maximum):
        raise exception.ValidationError(
            field=name, reason='must be between %d and %s' % (minimum, maximum or 'any'))
    return value


def query_choice(req: Any, name: str, choices: tuple[str, ...], default: str | None = None
                 ) -> str | None:
    value = req.GET.get(name, default)
    if value is not None and value not in choices:
        raise exception.ValidationError(
            field=name, reason='%r is not one of %s' % (value, ', '.join(choices)))
    return value


def query_bool(req: Any, name: str) -> bool:
    value = req.GET.get(name, '0').lower()
    if value in ('1', 'true', 'yes', 'on'):
        return True
    if value in ('0', 'false', 'no', 'off', ''):
        return False
    raise exception.ValidationError(field=name, reason='%r is not a boolean' % value)
