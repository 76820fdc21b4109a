"""A small, safe expression language for a volume's ``requirements`` and ``rank``.

The text comes from a volume-create request, so it is untrusted: it is parsed
by hand (``expression_parser``) into a tiny AST whose only names are backend
attributes and compiled once into Python functions; nothing reaches
``eval``/``exec``/``ast``, and with no calls, subscripts or attributes (beyond
``capabilities.<key>``) no path leads to a Python object. The idea is
OpenNebula's SCHED_DS_REQUIREMENTS/RANK; the syntax is Python's, plus ``&&``,
``||``, ``!`` as aliases of ``and``, ``or``, ``not`` (with the same precedence
as the words).

Example::

    >>> expr = compile_expression('free_capacity_gb > 100 and "ssd" in tags')
    >>> expr.evaluate({'free_capacity_gb': 500.0, 'tags': ['ssd']})
    True
    >>> compile_expression('free_capacity_gb - 10 * volume_count').evaluate(
    ...     {'free_capacity_gb': 500.0, 'volume_count': 3})
    470.0

Grammar, lowest precedence first::

    expr       := and_expr (('or' | '||') and_expr)*
    and_expr   := not_expr (('and' | '&&') not_expr)*
    not_expr   := ('not' | '!') not_expr | comparison
    comparison := sum [('==' | '!=' | '<' | '<=' | '>' | '>=' | 'in' | 'not in') sum]
    sum        := product (('+' | '-') product)*
    product    := unary (('*' | '/' | '%') unary)*
    unary      := '-' unary | primary
    primary    := number | string | true | false | null | NAME | capabilities.KEY
                | '(' expr ')' | '[' [literal (',' literal)*] ']'

Values are typed: ordering and arithmetic need two numbers (or two strings for
``<`` and ``+``), so ``free_capacity_gb > 100`` for a backend whose free space
is unknown (null) is an :class:`EvaluationError`, never a silent ``False``.
"""

import functools
import operator
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.db.records import Backend
from gridcentric_storage.scheduler.expression_parser import (
    KNOWN_NAMES,
    MAX_DEPTH,
    Binary,
    Capability,
    Const,
    Logical,
    Name,
    Node,
    ParseError,
    Unary,
    parse,
    unparse,
)
from gridcentric_storage.scheduler.expression_parser import NUMBER_TYPES as _NUMBER

__all__ = ['KNOWN_NAMES', 'MAX_DEPTH', 'MAX_LENGTH', 'EvaluationError', 'Expression',
           'compile_expression', 'unparse']

MAX_LENGTH = 1024


class EvaluationError(Exception):
    """``null > 1``, ``1 / 0``...: a rejection reason in requirements, 0 in rank."""


# ------------------------------------------------------------------ compiler
#
# A node compiles to a function from the list of backends to the list of its
# values: one comprehension per node (usual types inline, the rest through
# _scalar), several times faster than a Python call per node per backend.
# Errors are returned values, so one bad backend spoils nothing else; and/or
# drop the operand they would not have evaluated (nothing has side effects).

_Vec = Callable[[Sequence[Any]], list[Any]]
_Err = EvaluationError
_ORDER = {'<': operator.lt, '<=': operator.le, '>': operator.gt, '>=': operator.ge}
_ARITH = {'+': operator.add, '-': operator.sub, '*': operator.mul,
          '/': operator.truediv, '%': operator.mod}
_TYPES = {bool: 'boolean', int: 'number', float: 'number', str: 'string', list: 'list',
          tuple: 'list', dict: 'object'}


def _type(value: Any) -> str:
    return 'null' if value is None else _TYPES.get(type(value), type(value).__name__)


def _scalar(op: str, where: str) -> Callable[[Any, Any], Any]:
    """``op`` on one pair of values, with every type rule; returns errors, never raises."""
    def apply(x: Any, y: Any) -> Any:
        if type(x) is _Err or type(y) is _Err:
            return x if type(x) is _Err else y
        numbers = type(x) in _NUMBER and type(y) in _NUMBER
        try:
            if op in ('==', '!='):
                return (x == y) == (op == '==')
            if op in ('in', 'not in') and (isinstance(y, (list, tuple))
                                           or type(x) is str is type(y)):
                return (x in y) == (op == 'in')
            if op in _ORDER and (numbers or type(x) is str is type(y)):
                return _ORDER[op](x, y)
            if op in ('/', '%') and numbers and not y:
                return _Err('division by zero in %s' % where)
            if op in _ARITH and (numbers or (op == '+' and type(x) is type(y)
                                             and type(x) in (str, list))):
                return _ARITH[op](x, y)
        except (TypeError, ValueError, ArithmeticError) as exc:
            return _Err('%s in %s' % (exc, where))
        return _Err('cannot apply %r to %s and %s in %s' % (op, _type(x), _type(y), where))
    return apply


def _compile(node: Node) -> _Vec:
    """Turn ``node`` into ``f(backends) -> [value per backend]``."""
    if isinstance(node, Const):
        value = node.value
        return lambda rows: [value] * len(rows)
    if isinstance(node, Name):
        name = node.key
        return lambda rows: [row.get(name) for row in rows]
    if isinstance(node, Capability):
        key = node.key
        return lambda rows: [caps.get(key) if type(caps) is dict else None
                             for caps in [row.get('capabilities') for row in rows]]
    if isinstance(node, Unary):
        operand, where = _compile(node.operand), unparse(node)
        if node.op == 'not':
            return lambda rows: [x if type(x) is _Err else not x for x in operand(rows)]
        return lambda rows: [-x if type(x) in _NUMBER else x if type(x) is _Err else _Err(
            "cannot apply '-' to %s in %s" % (_type(x), where)) for x in operand(rows)]
    if isinstance(node, Logical):
        return _compile_logical(node)
    return _compile_binary(node)


def _compile_logical(node: Logical) -> _Vec:
    fns, is_and = tuple(map(_compile, node.operands)), node.op == 'and'

    def combine(x: Any, y: Any) -> Any:     # the rare case: an operand is an error
        if type(x) is _Err or (bool(x) is not is_and):
            return x if type(x) is _Err else not is_and
        return y if type(y) is _Err else bool(y)

    def logical(rows: Sequence[Any]) -> list[Any]:
        result = fns[0](rows)
        for fn in fns[1:]:
            pairs = zip(result, fn(rows), strict=True)
            # "True if ... else False" rather than bool(...): no call per value.
            if is_and:
                result = [(True if x and y else False) if type(x) is not _Err
                          and type(y) is not _Err else combine(x, y) for x, y in pairs]
            else:
                result = [(True if x or y else False) if type(x) is not _Err
                          and type(y) is not _Err else combine(x, y) for x, y in pairs]
        return result
    return logical


def _compile_binary(node: Binary) -> _Vec:
    op, scalar = node.op, _scalar(node.op, unparse(node))
    if op in ('in', 'not in'):
        left, right, negate = _compile(node.left), _compile(node.right), op == 'not in'
        if isinstance(node.left, Const) and isinstance(node.right, Name):
            item, name = node.left.value, node.right.key     # "ssd" in tags: one pass
            return lambda rows: [(item in y) is not negate if type(y := row.get(name)) is list
                                 else scalar(item, y) for row in rows]
        return lambda rows: [
            (x in y) is not negate if type(y) is list and type(x) is not _Err
            else scalar(x, y) for x, y in zip(left(rows), right(rows), strict=True)]
    if op in ('==', '!='):
        left, right = _compile(node.left), _compile(node.right)
        equal = operator.eq if op == '==' else operator.ne
        return lambda rows: [
            equal(x, y) if type(x) is not _Err and type(y) is not _Err else scalar(x, y)
            for x, y in zip(left(rows), right(rows), strict=True)]
    fast, nonzero = _ORDER.get(op) or _ARITH[op], op not in ('/', '%')
    if (isinstance(node.left, Name) and isinstance(node.right, Const)
            and type(node.right.value) in _NUMBER):     # "free_capacity_gb > 100": one pass
        name, limit = node.left.key, node.right.value

        def leaf(rows: Sequence[Any]) -> list[Any]:
            return [fast(x, limit) if type(x := row.get(name)) in _NUMBER and (nonzero or limit)
                    else scalar(x, limit) for row in rows]
        return _overflow_safe(leaf, lambda rows: [scalar(row.get(name), limit) for row in rows])
    left, right = _compile(node.left), _compile(node.right)

    def numeric(rows: Sequence[Any]) -> list[Any]:
        return [fast(x, y) if type(x) in _NUMBER and type(y) in _NUMBER and (nonzero or y)
                else scalar(x, y) for x, y in zip(left(rows), right(rows), strict=True)]
    return _overflow_safe(numeric, lambda rows: list(map(scalar, left(rows), right(rows))))


def _overflow_safe(fast: _Vec, slow: _Vec) -> _Vec:
    """``fast``, or ``slow`` (per-value rules) if an int too large for a float shows up."""
    def run(rows: Sequence[Any]) -> list[Any]:
        try:
            return fast(rows)
        except ArithmeticError:
            return slow(rows)
    return run


# ------------------------------------------------------------------ public API

class Expression:
    """A compiled expression: immutable, thread-safe, cheap to evaluate."""

    __slots__ = ('_columns', 'source', 'tree')

    def __init__(self, source: str, tree: Node) -> None:
        self.source = source
        self.tree = tree
        self._columns = _compile(tree)

    def evaluate(self, backend: Backend) -> Any:
        """The value for ``backend``; raises only :class:`EvaluationError`."""
        value = self.evaluate_each([backend])[0]
        if type(value) is _Err:
            raise value
        return value

    def evaluate_many(self, backends: Sequence[Mapping[str, Any]], default: Any) -> list[Any]:
        """The value for each backend, ``default`` where :meth:`evaluate` would raise."""
        values = self.evaluate_each(backends)
        if _Err in map(type, values):
            values = [default if type(value) is _Err else value for value in values]
        return values

    def evaluate_each(self, backends: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The value for each backend, or the :class:`EvaluationError` it would raise."""
        try:
            return self._columns(backends)
        except (TypeError, ValueError, ArithmeticError) as exc:   # a bug here, not the user's
            return [_Err('%s: %s' % (type(exc).__name__, exc))] * len(backends)

    def canonical(self) -> str:
        """Fully parenthesised form, showing how the text was understood."""
        return unparse(self.tree)

    def __repr__(self) -> str:
        return 'Expression(%r)' % self.source


def compile_expression(text: str) -> Expression:
    """Parse and compile ``text``; raises ``InvalidExpression`` (HTTP 400).

    Results are cached: a cloud sends the same few expressions over and over.
    """
    if not isinstance(text, str):
        raise exception.InvalidExpression(expression=text, reason='must be a string')
    if len(text) > MAX_LENGTH:
        raise exception.InvalidExpression(
            expression=text[:40] + '...',
            reason='longer than %d characters (%d)' % (MAX_LENGTH, len(text)))
    return _compile_cached(text)


@functools.lru_cache(maxsize=256)
def _compile_cached(text: str) -> Expression:
    try:
        return Expression(text, parse(text))
    except ParseError as exc:
        raise exception.InvalidExpression(expression=text, reason=str(exc)) from None
