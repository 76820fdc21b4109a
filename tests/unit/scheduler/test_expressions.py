"""The requirements/rank language: what it accepts, what it means, what it refuses."""

import random
import tokenize
from typing import Any

import pytest

from gridcentric_storage.common import exception
from gridcentric_storage.scheduler import expression_parser, expressions
from gridcentric_storage.scheduler.expressions import EvaluationError, compile_expression

from .conftest import backend


def value(text: str, **attributes: Any) -> Any:
    return compile_expression(text).evaluate(backend(**attributes))


def error(text: str) -> str:
    with pytest.raises(exception.InvalidExpression) as caught:
        compile_expression(text)
    assert caught.value.code == 400
    return str(caught.value)


@pytest.mark.parametrize('text, canonical', [
    ('cost > 1 or cost < 0 and name == "x"', '((cost > 1) or ((cost < 0) and (name == "x")))'),
    ('not cost > 1 and role == "san"', '((not (cost > 1)) and (role == "san"))'),
    ('cost + 2 * 3 - 1', '((cost + (2 * 3)) - 1)'),
    ('cost - 1 - 2', '((cost - 1) - 2)'),
    ('-cost * 2 % 3', '(((-cost) * 2) % 3)'),
    ('(cost + 2) * 3', '((cost + 2) * 3)'),
    ('cost == 1 || host && !tags', '((cost == 1) or (host and (not tags)))'),
    ('cost >= 1 or cost <= 2 or cost != 3', '((cost >= 1) or (cost <= 2) or (cost != 3))'),
    ('"ssd" not in tags', '("ssd" not in tags)'),
    ('capabilities.multiattach == True', '(capabilities.multiattach == true)'),
])
def test_precedence(text: str, canonical: str) -> None:
    assert compile_expression(text).canonical() == canonical


@pytest.mark.parametrize('text, expected', [
    ('1 + 2 * 3', 7), ('(1 + 2) * 3', 9), ('10 - 4 - 3', 3), ('7 % 4', 3), ('7 / 2', 3.5),
    ('-2 * 3', -6), ('2 * -3', -6), ('1.5e2', 150.0), ('.5 + 1', 1.5),
    ('not true or true', True), ('not (true or true)', False), ('True and not False', True),
    ('null == None', True), ('1 == 1.0', True), ('"a" < "b"', True), ('"a" + "b"', 'ab'),
    ('[1, "x"] == [1, "x"]', True), ('3 in [1, 2, 3]', True), ('"x" not in [1, 2]', True),
    ('"ss" in "class"', True), ('false && true || true', True), ('!false', True),
])
def test_literal_arithmetic_and_logic(text: str, expected: Any) -> None:
    result = value(text)
    assert result == expected and type(result) is type(expected)


@pytest.mark.parametrize('text, expected', [
    (r'"it\'s" == ' + "'it\\'s'", True),
    (r'"say \"hi\""', 'say "hi"'),
    (r"'tab\there'", 'tab\there'),
    (r'"back\\slash"', 'back\\slash'),
    (r'"caf\u00e9"', 'café'),
    ('"café"', 'café'),
    ('\'double " inside single\'', 'double " inside single'),
])
def test_strings(text: str, expected: Any) -> None:
    assert value(text) == expected


def test_backend_attributes() -> None:
    attributes = {'free_capacity_gb': 500.0, 'tags': ['ssd'], 'cost': 2, 'volume_count': 3,
                  'capabilities': {'multiattach': True}}
    assert value('free_capacity_gb > 100 and "ssd" in tags', **attributes) is True
    assert value('cost <= 3 || role == "repository"', **attributes) is True
    assert value('free_capacity_gb - 10 * volume_count', **attributes) == 470.0
    assert value('capabilities.multiattach and capabilities.absent == null', **attributes)
    assert value('"nvme" in tags', **attributes) is False


def test_evaluation_errors_name_the_subexpression() -> None:
    with pytest.raises(EvaluationError, match=r"cannot apply '>' to null and number in "
                                              r"\(free_capacity_gb > 100\)"):
        value('free_capacity_gb > 100', free_capacity_gb=None)
    with pytest.raises(EvaluationError, match='division by zero'):
        value('cost / 0')
    with pytest.raises(EvaluationError, match="cannot apply '-' to string and number"):
        value('name - 1')
    with pytest.raises(EvaluationError, match="'\\+' to boolean and number"):
        value('true + 1')
    with pytest.raises(EvaluationError, match="'in' to string and null"):
        value('"ssd" in tags', tags=None)


def test_and_or_short_circuit_errors_away() -> None:
    assert value('free_capacity_gb == null or free_capacity_gb > 100',
                 free_capacity_gb=None) is True
    assert value('false and 1 / 0 > 1') is False
    assert value('true or 1 / 0 > 1') is True
    with pytest.raises(EvaluationError):
        value('true and 1 / 0 > 1')


def test_batch_evaluation_matches_one_at_a_time() -> None:
    rng = random.Random(3)
    pool = [backend('b%d' % i, cost=rng.choice([0, 1, 2, None, 'x']),
                    free_capacity_gb=rng.choice([0.0, 50.0, None, 10 ** 400]),
                    tags=rng.choice([['ssd'], [], None, 'ssd']),
                    capabilities=rng.choice([{}, None, {'iops': 5}]))
            for i in range(200)]
    texts = ['free_capacity_gb > 10 and "ssd" in tags', 'cost * 2 + free_capacity_gb / 10',
             'not (cost == 1) or capabilities.iops >= 5', '-cost', 'cost % 2 == 0',
             '"ssd" not in tags', 'free_capacity_gb / 3.0', 'tags == ["ssd"] || cost < 1']
    for text in texts:
        expression = compile_expression(text)
        batch = expression.evaluate_each(pool)
        for row, got in zip(pool, batch, strict=True):
            try:
                expected = expression.evaluate(row)
            except EvaluationError as exc:
                assert type(got) is EvaluationError and str(got) == str(exc)
            else:
                assert got == expected and type(got) is type(expected), (text, row)
        assert expression.evaluate_many(pool, 'default').count('default') == sum(
            type(v) is EvaluationError for v in batch)


def test_unknown_name_lists_the_known_ones() -> None:
    message = error('free_space > 10')
    assert "column 1: unknown name 'free_space'" in message
    assert 'free_capacity_gb' in message and 'capabilities.<key>' in message


def test_options_holding_secrets_are_not_reachable() -> None:
    assert "unknown name 'options'" in error('options == "x"')


@pytest.mark.parametrize('text, where', [
    ('cost >', "column 7: expected a value, a name or \"(\", got end of expression"),
    ('cost > > 1', "column 8: expected a value"),
    ('(cost > 1', "column 10: expected ')', got end of expression"),
    ('cost = 1', "column 6: unexpected character '='; use == to compare"),
    ('cost > 1 cost', "column 10: unexpected 'cost'; expected an operator"),
    ('"abc', 'column 1: unterminated string'),
    (r'"a\q"', r'column 3: invalid escape \q'),
    ('1 < cost < 3', 'column 10: chained comparisons are not supported'),
    ('[cost]', 'column 2: list items must be literal values'),
    ('capabilities', 'column 13: expected "." after capabilities'),
    ('cost @ 2', "column 6: unexpected character '@'"),
])
def test_syntax_errors_say_where_and_what(text: str, where: str) -> None:
    assert where in error(text)


def test_length_limit() -> None:
    assert compile_expression('cost' + ' ' * (expressions.MAX_LENGTH - 4))
    assert 'longer than 1024 characters (1025)' in error('cost' + ' ' * 1021)


def test_depth_limit() -> None:
    assert value('(' * 32 + '1' + ')' * 32) == 1
    assert 'nested deeper than 32 levels' in error('(' * 33 + '1' + ')' * 33)
    assert 'nested deeper than 32 levels' in error('not ' * 33 + 'true')
    assert 'nested deeper than 32 levels' in error(' + '.join(['cost'] * 34))
    # Long and/or chains are flat, so they do not count.
    assert value(' and '.join(['cost == 0'] * 70)) is True


@pytest.mark.parametrize('text', [
    '__import__("os").system("x")', '().__class__', 'name.__class__', 'name.upper()',
    '"".join(tags)', 'eval("1")', 'exec("x = 1")', 'lambda: 1', 'open("/etc/passwd")',
    'tags[0]', '{}', 'cost if true else 1', '2 ** 1000000', 'globals()', 'name; 1',
    '[].__class__.__base__', 'capabilities["x"]', 'f"{name}"', '`id`',
])
def test_python_escape_hatches_are_rejected_at_compile_time(text: str) -> None:
    error(text)


def test_capability_keys_are_only_dictionary_keys() -> None:
    assert value('capabilities.__class__ == null') is True


@pytest.mark.parametrize('module', [expressions, expression_parser])
def test_module_never_calls_eval_or_exec(module: Any) -> None:
    with open(module.__file__, encoding='utf-8') as source:
        names = {token.string for token in tokenize.generate_tokens(source.readline)
                 if token.type == tokenize.NAME}
    assert not names & {'eval', 'exec', '__import__', 'literal_eval', 'getattr'}


ALPHABET = ('abcdefghijklmnopqrstuvwxyz_ABCXYZ0123456789.,:;()[]{}<>=!&|+-*/%^~@#$?"\'\\ '
            '\t\n\u00e9\u4e2d\x00')
TOKENS = ['cost', 'free_capacity_gb', 'tags', 'capabilities', '.', 'multiattach', 'name',
          'and', 'or', 'not', 'in', '&&', '||', '!', '==', '!=', '<', '<=', '>', '>=', '+',
          '-', '*', '/', '%', '(', ')', '[', ']', ',', '1', '0', '2.5', '1e400', '"ssd"',
          "'x'", 'true', 'null', 'None', '"\\u00e9"', '"\\', '10' * 30]


def test_random_garbage_only_ever_raises_invalid_expression() -> None:
    """A property test with a fixed seed (hypothesis is not available everywhere)."""
    rng = random.Random(20240229)
    samples = [''.join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 40)))
               for _ in range(2500)]
    samples += [' '.join(rng.choice(TOKENS) for _ in range(rng.randint(1, 15)))
                for _ in range(2500)]
    pool = [backend(), backend('odd', free_capacity_gb=None, tags=None, capabilities=None,
                               cost='x')]
    compiled = 0
    for text in samples:
        try:
            expression = compile_expression(text)
        except exception.InvalidExpression:
            continue
        compiled += 1
        for row in pool:
            try:
                expression.evaluate(row)
            except EvaluationError:
                pass
        expression.evaluate_many(pool, None)
    assert compiled > 50        # some of the token soup does reach the evaluator


def random_expression(rng: random.Random, depth: int = 0) -> str:
    """A syntactically valid expression with operands of every type, sensible or not."""
    if depth > 3 or rng.random() < 0.3:
        return rng.choice(['cost', 'free_capacity_gb', 'tags', 'name', 'capabilities.iops',
                           '0', '3', '-2.5', '"ssd"', 'true', 'null', '[1, "ssd"]', '1e308'])
    if rng.random() < 0.15:
        return rng.choice(['not ', '-', '!']) + '(%s)' % random_expression(rng, depth + 1)
    op = rng.choice(['and', 'or', '&&', '||', '==', '!=', '<', '<=', '>', '>=', 'in',
                     'not in', '+', '-', '*', '/', '%'])
    return '(%s %s %s)' % (random_expression(rng, depth + 1), op,
                           random_expression(rng, depth + 1))


def test_random_valid_expressions_compile_and_evaluate_safely() -> None:
    rng = random.Random(42)
    pool = [backend('plain', capabilities={'iops': 100}),
            backend('odd', free_capacity_gb=None, tags=None, capabilities=None, cost='x')]
    for _ in range(1500):
        expression = compile_expression(random_expression(rng))
        batch = expression.evaluate_each(pool)
        for row, got in zip(pool, batch, strict=True):
            try:
                assert repr(expression.evaluate(row)) == repr(got)
            except EvaluationError as exc:
                assert str(exc) == str(got)
