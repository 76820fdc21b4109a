"""A small, safe expression language for a volume's ``requirements`` and ``rank``.

The text comes from a volume-create request, so it is untrusted: it is parsed
by hand into a tiny AST whose only names are backend attributes and compiled
once into Python functions; nothing reaches ``eval``/``exec``/``ast``, and with
no calls, subscripts or attributes (beyond ``capabilities.<key>``) no path leads
to a Python object. The idea is OpenNebula's SCHED_DS_REQUIREMENTS/RANK; the
syntax is Python's, plus ``&&``, ``||``, ``!`` as aliases of ``and``, ``or``,
``not`` (with the same precedence as the words).

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
import json
import operator
import re
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

from gridcentric_storage.common import exception

__all__ = ['KNOWN_NAMES', 'MAX_DEPTH', 'MAX_LENGTH', 'EvaluationError', 'Expression',
           'compile_expression', 'unparse']

MAX_LENGTH = 1024
#: Parentheses, lists, ``not``, unary ``-`` and each operator of a ``+ - * / %``
#: chain nest one level (``and``/``or`` chains do not): keeps the parser, the
#: compiler and evaluation far from Python's recursion limit.
MAX_DEPTH = 32

#: Backend attributes an expression may read. ``options`` is deliberately
#: absent: it holds driver credentials.
KNOWN_NAMES = frozenset((
    'name', 'driver', 'state', 'status', 'role', 'cost', 'tags', 'availability_zone',
    'host', 'total_capacity_gb', 'free_capacity_gb', 'provisioned_capacity_gb',
    'volume_count', 'max_over_subscription_ratio', 'reserved_percentage'))


class EvaluationError(Exception):
    """``null > 1``, ``1 / 0``...: a rejection reason in requirements, 0 in rank."""


# ------------------------------------------------------------------ syntax tree

class Const(NamedTuple):
    value: Any


class Name(NamedTuple):
    key: str                # one of KNOWN_NAMES


class Capability(NamedTuple):
    key: str


class Unary(NamedTuple):
    op: str                 # 'not' or '-'
    operand: 'Node'


class Binary(NamedTuple):
    op: str                 # a comparison, 'in', 'not in' or arithmetic
    left: 'Node'
    right: 'Node'


class Logical(NamedTuple):
    op: str                 # 'and' or 'or'; a and b and c is one node
    operands: tuple['Node', ...]


Node = Const | Name | Capability | Unary | Binary | Logical


def unparse(node: Node) -> str:
    """Fully parenthesised text of ``node``: how the parser understood it."""
    if isinstance(node, Const):
        return _literal(node.value)
    if isinstance(node, Name):
        return node.key
    if isinstance(node, Capability):
        return 'capabilities.' + node.key
    if isinstance(node, Unary):
        return '(%s%s)' % ('not ' if node.op == 'not' else '-', unparse(node.operand))
    if isinstance(node, Binary):
        return '(%s %s %s)' % (unparse(node.left), node.op, unparse(node.right))
    return '(%s)' % (' %s ' % node.op).join(map(unparse, node.operands))


def _literal(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False)      # null, true, "a\"b", [1, 2]


# ------------------------------------------------------------------ compiler
#
# A node compiles to a function from the list of backends to the list of its
# values: one comprehension per node (usual types inline, the rest through
# _scalar), several times faster than a Python call per node per backend.
# Errors are returned values, so one bad backend spoils nothing else; and/or
# drop the operand they would not have evaluated (nothing has side effects).

_Vec = Callable[[Sequence[Any]], list[Any]]
_Err = EvaluationError
_NUMBER = frozenset((int, float))       # bool is deliberately not a number here
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


# ------------------------------------------------------------------ tokenizer

_LITERALS = {'true': True, 'True': True, 'false': False, 'False': False,
             'null': None, 'None': None}
_KEYWORDS = frozenset(('and', 'or', 'not', 'in')) | frozenset(_LITERALS)
_ESCAPES = {'\\': '\\', '"': '"', "'": "'", 'n': '\n', 't': '\t', 'r': '\r', '0': '\0'}
_KNOWN_ESCAPES = ' '.join('\\' + key for key in _ESCAPES) + ' \\uXXXX'
_SPACE = re.compile(r'\s*')
_ESCAPE = re.compile(r'\\(u[0-9a-fA-F]{4}|[\s\S])')
_TOKEN = re.compile(r'''
    (?P<num>(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)
  | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
  | (?P<op>==|!=|<=|>=|&&|\|\||[-+*/%<>!()\[\],.])
  | (?P<str>"(?:[^"\\]|\\[\s\S])*"|'(?:[^'\\]|\\[\s\S])*')
  | (?P<quote>["'])                     # only when the string above is unterminated
''', re.VERBOSE)


class _Token(NamedTuple):
    kind: str          # 'num', 'str', 'name', 'op' or 'end'
    value: Any
    col: int           # 1-based column of the first character

    def describe(self) -> str:
        if self.kind == 'end':
            return 'end of expression'
        if self.kind == 'str':
            return 'string ' + _literal(self.value)
        return str(self.value) if self.kind == 'num' else repr(self.value)


class _Error(Exception):
    """Internal: carries a parse error up to :func:`compile_expression`."""


def _fail(message: str, col: int) -> _Error:
    return _Error('column %d: %s' % (col, message))


def _unescape(raw: str, col: int) -> str:
    """The value of string token ``raw`` (quotes included) found at column ``col``."""
    def replace(match: re.Match[str]) -> str:
        code = match.group(1)
        if code in _ESCAPES:
            return _ESCAPES[code]
        if len(code) == 5 and not 0xD800 <= int(code[1:], 16) <= 0xDFFF:
            return chr(int(code[1:], 16))
        raise _fail('invalid escape \\%s (known: %s)' % (code, _KNOWN_ESCAPES),
                    col + 1 + match.start())
    return _ESCAPE.sub(replace, raw[1:-1])


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while True:
        pos = _SPACE.match(text, pos).end()  # type: ignore[union-attr]  # \s* always matches
        if pos >= len(text):
            return tokens + [_Token('end', None, pos + 1)]
        match = _TOKEN.match(text, pos)
        if match is None:
            hint = '; use == to compare' if text[pos] == '=' else ''
            raise _fail('unexpected character %r%s' % (text[pos], hint), pos + 1)
        kind, raw = match.lastgroup or '', match.group()
        if kind == 'quote':
            raise _fail('unterminated string', pos + 1)
        if kind == 'num':
            tokens.append(_Token(kind, int(raw) if raw.isdigit() else float(raw), pos + 1))
        else:
            tokens.append(_Token(kind, _unescape(raw, pos + 1) if kind == 'str' else raw,
                                 pos + 1))
        pos = match.end()


# ------------------------------------------------------------------ parser

#: Binding powers, Python's precedence: or < and < not < comparisons < + - < * / %.
_BINDING = {'or': 1, '||': 1, 'and': 2, '&&': 2, '+': 5, '-': 5, '*': 6, '/': 6, '%': 6}
_BINDING.update(dict.fromkeys(('==', '!=', '<', '<=', '>', '>=', 'in', 'not in'), 4))
_NOT, _COMPARISON, _NEGATION = 3, 4, 6
_ALIASES = {'||': 'or', '&&': 'and'}


class _Parser:
    """A Pratt parser: each binary operator binds as tightly as its power says."""

    def __init__(self, text: str) -> None:
        self.tokens = _tokenize(text)
        self.pos = 0
        self.depth = 0

    def _peek(self, ahead: int = 0) -> _Token:
        return self.tokens[min(self.pos + ahead, len(self.tokens) - 1)]

    def _next(self) -> _Token:
        token = self._peek()
        self.pos += 1
        return token

    def _at(self, word: str, ahead: int = 0) -> bool:
        token = self._peek(ahead)
        return token.kind in ('op', 'name') and token.value == word

    def _deeper(self, token: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise _fail('nested deeper than %d levels' % MAX_DEPTH, token.col)

    def _nested(self, token: _Token, parse: Callable[[], Node]) -> Node:
        self._deeper(token)
        node = parse()
        self.depth -= 1
        return node

    def parse(self) -> Node:
        node = self._expression(0)
        token = self._peek()
        if token.kind != 'end':
            raise _fail('unexpected %s; expected an operator or the end of the expression'
                        % token.describe(), token.col)
        return node

    def _operator(self) -> str | None:
        token = self._peek()
        if token.kind not in ('op', 'name'):
            return None
        if token.value == 'not' and self._at('in', ahead=1):
            return 'not in'
        return token.value if token.value in _BINDING else None

    def _expression(self, floor: int) -> Node:
        """Operators binding tighter than ``floor``, left-associative."""
        node, depth, compared = self._prefix(), self.depth, False
        while (op := self._operator()) is not None and _BINDING[op] > floor:
            token, power = self._next(), _BINDING[op]
            self.pos += op == 'not in'
            if power == _COMPARISON:
                if compared:
                    raise _fail('chained comparisons are not supported; combine them with '
                                '"and"', token.col)
                compared = True
            elif power > _COMPARISON:
                self._deeper(token)     # each operator nests the chain so far one level
            right, op = self._expression(power), _ALIASES.get(op, op)
            if isinstance(node, Logical) and node.op == op:     # a and b and c: one node
                node = Logical(op, node.operands + (right,))
            elif op in ('and', 'or'):
                node = Logical(op, (node, right))
            else:
                node = Binary(op, node, right)
        self.depth = depth
        return node

    def _prefix(self) -> Node:
        token = self._next()
        kind, value = token.kind, token.value
        if kind in ('num', 'str'):
            return Const(value)
        if kind == 'name' and value in _LITERALS:
            return Const(_LITERALS[value])
        if (kind, value) in (('name', 'not'), ('op', '!')):
            return self._nested(token, lambda: Unary('not', self._expression(_NOT)))
        if (kind, value) == ('op', '-'):
            operand = self._nested(token, lambda: self._expression(_NEGATION))
            if isinstance(operand, Const) and type(operand.value) in _NUMBER:
                return Const(-operand.value)
            return Unary('-', operand)
        if kind == 'name' and value not in _KEYWORDS:
            return self._name(token)
        if (kind, value) == ('op', '('):
            return self._nested(token, lambda: self._closed(self._expression(0), ')'))
        if (kind, value) == ('op', '['):
            return self._nested(token, lambda: self._closed(self._list(), ']'))
        raise _fail('expected a value, a name or "(", got %s' % token.describe(), token.col)

    def _closed(self, node: Node, closer: str) -> Node:
        token = self._next()
        if token.kind != 'op' or token.value != closer:
            raise _fail('expected %r, got %s' % (closer, token.describe()), token.col)
        return node

    def _list(self) -> Node:
        """A list of literals, ``[1, "ssd", -2.5]``: what ``in`` needs, and simple."""
        items: list[Any] = []
        while not self._at(']'):
            token, item = self._peek(), self._prefix()
            if not isinstance(item, Const):
                raise _fail('list items must be literal values', token.col)
            items.append(item.value)
            if not self._at(','):
                break
            self._next()
        return Const(items)

    def _name(self, token: _Token) -> Node:
        if token.value != 'capabilities':
            if token.value not in KNOWN_NAMES:
                raise _fail('unknown name %r (known: %s, capabilities.<key>)'
                            % (token.value, ', '.join(sorted(KNOWN_NAMES))), token.col)
            return Name(token.value)
        if not self._at('.'):
            raise _fail('expected "." after capabilities (write capabilities.<key>)',
                        self._peek().col)
        self._next()
        key = self._next()
        if key.kind != 'name':
            raise _fail('expected a capability name, got %s' % key.describe(), key.col)
        return Capability(key.value)


# ------------------------------------------------------------------ public API

class Expression:
    """A compiled expression: immutable, thread-safe, cheap to evaluate."""

    __slots__ = ('_columns', 'source', 'tree')

    def __init__(self, source: str, tree: Node) -> None:
        self.source = source
        self.tree = tree
        self._columns = _compile(tree)

    def evaluate(self, backend: dict[str, Any]) -> Any:
        """The value for ``backend``; raises only :class:`EvaluationError`."""
        value = self.evaluate_each([backend])[0]
        if type(value) is _Err:
            raise value
        return value

    def evaluate_many(self, backends: Sequence[dict[str, Any]], default: Any) -> list[Any]:
        """The value for each backend, ``default`` where :meth:`evaluate` would raise."""
        values = self.evaluate_each(backends)
        if _Err in map(type, values):
            values = [default if type(value) is _Err else value for value in values]
        return values

    def evaluate_each(self, backends: Sequence[dict[str, Any]]) -> list[Any]:
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
        return Expression(text, _Parser(text).parse())
    except _Error as exc:
        raise exception.InvalidExpression(expression=text, reason=str(exc)) from None
