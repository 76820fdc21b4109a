"""What a new volume needs from its backend, compiled once per create request.

Expressions and capability specs are parsed when the :class:`RequestSpec` is
built, so a bad request fails with a 400 before anything is written, and the
scheduler's per-backend loop never parses text.

Example::

    >>> spec = RequestSpec.from_volume_request({
    ...     'size': 100, 'role': 'san', 'tags': ['ssd'],
    ...     'capabilities': {'multiattach': True, 'total_iops': '>= 1000'},
    ...     'requirements': 'free_capacity_gb > 500 || cost <= 2',
    ...     'rank': 'free_capacity_gb - 10 * volume_count'})
    >>> spec.capability_checks[1].reason({'total_iops': 200})
    'capability total_iops is 200, need >= 1000'
"""

import dataclasses
import operator
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

from gridcentric_storage.common import exception
from gridcentric_storage.scheduler.base import capability_bool
from gridcentric_storage.scheduler.expressions import Expression, compile_expression

__all__ = ['CapabilityCheck', 'RequestSpec', 'compile_capability']

_NUMERIC_OPS: dict[str, Callable[[float, float], bool]] = {
    '==': operator.eq, '!=': operator.ne, '>=': operator.ge, '<=': operator.le}


class CapabilityCheck(NamedTuple):
    """One required capability; ``wanted`` is how the reason shows the requirement."""

    key: str
    wanted: str
    test: Callable[[Any], bool]
    #: A value that certainly passes, so batch filtering can try ``is`` first.
    sure: Any = NotImplemented

    def reason(self, capabilities: Mapping[str, Any]) -> str | None:
        value = capabilities.get(self.key)
        if self.test(value):
            return None
        shown = 'missing' if value is None else str(value)
        if len(shown) > 60:
            shown = shown[:57] + '...'
        return 'capability %s is %s, need %s' % (self.key, shown, self.wanted)


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        return None


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def _contains(value: Any, item: str) -> bool:
    if isinstance(value, (list, tuple)):
        return item in [str(element) for element in value]
    return isinstance(value, str) and item in value


def compile_capability(key: str, wanted: Any) -> CapabilityCheck:
    """Compile one ``capabilities`` entry of a request.

    Plain JSON values must equal the capability (booleans the Cinder way, so a
    driver reporting ``'True'`` satisfies ``true``). Strings may start with one
    of Cinder's extra-spec operators: ``<is> True``, ``== 10``, ``!= 10``,
    ``>= 10``, ``<= 10`` (numeric), ``<in> ssd`` (substring or list member),
    ``<or> a <or> b`` (any of); any other string must match exactly.
    """
    def bad(reason: str) -> exception.InvalidExpression:
        return exception.InvalidExpression(expression='capabilities.%s: %r' % (key, wanted),
                                           reason=reason)

    if isinstance(wanted, bool):
        return CapabilityCheck(key, str(wanted), lambda v: capability_bool(v) is wanted, wanted)
    if isinstance(wanted, (int, float)):
        return CapabilityCheck(key, str(wanted), lambda v: _number(v) == wanted)
    if not isinstance(wanted, str):
        raise bad('a capability must be a boolean, a number or a string')
    text = wanted.strip()
    if text.startswith('<is>'):
        flag = capability_bool(text[4:])
        if flag is None:
            raise bad('<is> needs True or False')
        return CapabilityCheck(key, '<is> %s' % flag, lambda v: capability_bool(v) is flag)
    if text.startswith('<or>'):
        choices = [choice.strip() for choice in text.split('<or>')[1:]]
        if not all(choices):
            raise bad('<or> needs a value after each <or>')
        return CapabilityCheck(key, text, lambda v: _text(v) in choices)
    if text.startswith('<in>'):
        item = text[4:].strip()
        if not item:
            raise bad('<in> needs a value')
        return CapabilityCheck(key, text, lambda v: _contains(v, item))
    if text[:2] in _NUMERIC_OPS:
        compare, limit = _NUMERIC_OPS[text[:2]], _number(text[2:])
        if limit is None:
            raise bad('%s needs a number' % text[:2])

        def numeric(value: Any) -> bool:
            number = _number(value)
            return number is not None and compare(number, limit)
        return CapabilityCheck(key, '%s %s' % (text[:2], text[2:].strip()), numeric)
    return CapabilityCheck(key, text, lambda v: _text(v) == text)


@dataclasses.dataclass
class RequestSpec:
    """Placement constraints of one new volume (the volume API's fields)."""

    size: int
    role: str | None = None
    tags: list[str] = dataclasses.field(default_factory=list)
    availability_zone: str | None = None
    capabilities: dict[str, Any] = dataclasses.field(default_factory=dict)
    requirements: str | None = None
    rank: str | None = None
    backend_id: str | None = None

    requirements_expr: Expression | None = dataclasses.field(
        init=False, default=None, repr=False, compare=False)
    rank_expr: Expression | None = dataclasses.field(
        init=False, default=None, repr=False, compare=False)
    capability_checks: tuple[CapabilityCheck, ...] = dataclasses.field(
        init=False, default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.requirements is not None:
            self.requirements_expr = compile_expression(self.requirements)
        if self.rank is not None:
            self.rank_expr = compile_expression(self.rank)
        self.capability_checks = tuple(compile_capability(key, wanted)
                                       for key, wanted in self.capabilities.items())

    @classmethod
    def from_volume_request(cls, body: Mapping[str, Any]) -> 'RequestSpec':
        """Build from a volume-create body; raises a 400 error on anything malformed.

        The API's JSON schema should already have checked the shapes; this is
        the last line for callers that skip it (RPC, the CLI, tests).
        """
        size = body.get('size')
        if type(size) is not int or size < 1:
            raise exception.ValidationError(field='size',
                                            reason='must be a positive integer (GiB)')
        tags = body.get('tags') or []
        if not isinstance(tags, list) or not all(isinstance(tag, str) for tag in tags):
            raise exception.ValidationError(field='tags', reason='must be a list of strings')
        capabilities = body.get('capabilities') or {}
        if not isinstance(capabilities, dict):
            raise exception.ValidationError(field='capabilities', reason='must be an object')
        return cls(size=size, tags=list(tags), capabilities=dict(capabilities),
                   role=_optional_text(body, 'role'),
                   availability_zone=_optional_text(body, 'availability_zone'),
                   requirements=_optional_text(body, 'requirements'),
                   rank=_optional_text(body, 'rank'),
                   backend_id=_optional_text(body, 'backend_id'))


def _optional_text(body: Mapping[str, Any], field: str) -> str | None:
    value = body.get(field)
    if value is not None and not isinstance(value, str):
        raise exception.ValidationError(field=field, reason='must be a string')
    return value
