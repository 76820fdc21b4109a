"""JSON-schema validation of request bodies and query strings."""

import functools
from collections.abc import Callable
from typing import Any

import jsonschema

from gridcentric_storage.common import exception


def _message(error: jsonschema.ValidationError) -> str:
    path = '/'.join(str(p) for p in error.absolute_path)
    if error.validator == 'additionalProperties':
        return error.message
    if path:
        return '%s: %s' % (path, error.message)
    return error.message


def validate(instance: Any, schema: dict[str, Any]) -> None:
    validator = jsonschema.Draft7Validator(schema,
                                           format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(instance), key=lambda e: list(e.absolute_path))
    if errors:
        raise exception.Invalid(reason=_message(errors[0]))


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
