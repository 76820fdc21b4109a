"""The parsing half of the requirements/rank language (see ``expressions`` for the
language and its grammar): the tokenizer, a Pratt parser, and the syntax tree it
builds, with :func:`unparse` to show how a text was understood. Untrusted text
reaches only this module, which turns it into plain NamedTuples or a
:class:`ParseError` saying where and what is wrong; it is apart from
``expressions``, which compiles and evaluates trees, so the input side of the
language can be read, and checked for what it refuses, on its own.
"""

import json
import re
from collections.abc import Callable
from typing import Any, NamedTuple

__all__ = ['KNOWN_NAMES', 'MAX_DEPTH', 'NUMBER_TYPES', 'Binary', 'Capability', 'Const',
           'Logical', 'Name', 'Node', 'ParseError', 'Unary', 'parse', 'unparse']

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

#: The language's numbers (bool is deliberately not one): ``-`` is folded into a
#: literal only where evaluating it would give the same number.
NUMBER_TYPES = frozenset((int, float))


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


class ParseError(Exception):
    """A syntax error, ``column N: what``; :func:`compile_expression` reports it."""


def _fail(message: str, col: int) -> ParseError:
    return ParseError('column %d: %s' % (col, message))


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
            if isinstance(operand, Const) and type(operand.value) in NUMBER_TYPES:
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


def parse(text: str) -> Node:
    """The syntax tree of ``text``; raises :class:`ParseError`."""
    return _Parser(text).parse()
