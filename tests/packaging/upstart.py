"""A stanza check of upstart job files (``/etc/init/*.conf``).

No upstart parser exists outside upstart itself (``init-checkconf`` needs a
running upstart), so this reads a job the way upstart 1.x's ``init(5)``
describes it: one stanza per line, ``#`` comments, ``script`` ... ``end
script`` blocks for the main and pre/post processes, and event expressions
of event names, ``KEY=VALUE``/``KEY!=VALUE`` arguments, ``and``/``or`` and
parentheses after ``start on``/``stop on``. It reports every problem as one
line; a job is fine when :func:`check` returns an empty list.
"""

import dataclasses
import re
import shlex

#: Stanzas upstart 1.x knows, by their first word(s).
STANZAS = {
    'description', 'author', 'version', 'emits', 'usage', 'manual', 'task', 'instance',
    'start on', 'stop on', 'respawn', 'respawn limit', 'normal exit', 'expect',
    'exec', 'script', 'pre-start', 'post-start', 'pre-stop', 'post-stop',
    'chdir', 'chroot', 'env', 'export', 'umask', 'nice', 'oom score', 'limit',
    'kill signal', 'kill timeout', 'reload signal', 'console', 'setuid', 'setgid',
    'apparmor load', 'apparmor switch', 'cgroup',
}
PROCESS_STANZAS = ('pre-start', 'post-start', 'pre-stop', 'post-stop')
#: What every daemon job here must have.
REQUIRED = ('description', 'start on', 'stop on', 'respawn', 'chdir')

_EVENT_TOKEN = re.compile(r'\(|\)|\[[0-9Ss]+\]|[A-Za-z_][A-Za-z0-9_-]*(?:!?=[^\s()]+)?|[^\s()]+')


@dataclasses.dataclass
class Job:
    stanzas: dict[str, list[str]]
    main: list[str] | None  # the main process's argv when it is an ``exec``


def _event_problems(where: str, expression: str) -> list[str]:
    if not expression:
        return ['%s: no event expression' % where]
    depth, expect_operand, problems = 0, True, []
    for token in _EVENT_TOKEN.findall(expression):
        if token == '(':
            if not expect_operand:
                problems.append('%s: "(" after an operand' % where)
            depth += 1
        elif token == ')':
            depth -= 1
            if depth < 0 or expect_operand:
                problems.append('%s: unbalanced or empty ")"' % where)
        elif token in ('and', 'or'):
            if expect_operand:
                problems.append('%s: "%s" without a left operand' % (where, token))
            expect_operand = True
        elif expect_operand and re.fullmatch(r'[A-Za-z_][A-Za-z0-9_-]*', token):
            expect_operand = False  # an event name; its arguments follow
        elif not expect_operand and (re.fullmatch(r'[A-Za-z_]\w*!?=[^\s()]+', token)
                                     or re.fullmatch(r'\[[0-9Ss]+\]', token)):
            pass  # KEY=VALUE, KEY!=VALUE or a runlevel set after an event
        else:
            problems.append('%s: unexpected %r' % (where, token))
    if depth != 0:
        problems.append('%s: unbalanced parentheses' % where)
    if expect_operand:
        problems.append('%s: ends with an operator' % where)
    return problems


def _stanza_of(words: list[str]) -> str | None:
    two = ' '.join(words[:2])
    if two in STANZAS:
        return two
    return words[0] if words[0] in STANZAS else None


def parse(text: str) -> tuple[Job, list[str]]:
    """The job's stanzas and its problems."""
    stanzas: dict[str, list[str]] = {}
    problems: list[str] = []
    main: list[str] | None = None
    in_script: str | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        where = 'line %d' % number
        if in_script is not None:
            if line == 'end script':
                in_script = None
            continue
        if not line or line.startswith('#'):
            continue
        words = line.split()
        stanza = _stanza_of(words)
        if stanza is None:
            problems.append('%s: unknown stanza %r' % (where, words[0]))
            continue
        value = line[len(stanza):].strip()
        stanzas.setdefault(stanza, []).append(value)
        if stanza in PROCESS_STANZAS:
            kind = value.split()[:1]
            if kind == ['script']:
                in_script = stanza
            elif kind != ['exec'] or len(value.split()) < 2:
                problems.append('%s: %s needs "exec COMMAND" or "script"' % (where, stanza))
        elif stanza == 'script':
            in_script = 'script'
        elif stanza == 'exec':
            main = shlex.split(value)
            if not main:
                problems.append('%s: exec without a command' % where)
        elif stanza in ('start on', 'stop on'):
            problems += _event_problems('%s (%s)' % (where, stanza), value)
        elif stanza == 'respawn limit' and not re.fullmatch(r'\d+ \d+|unlimited', value):
            problems.append('%s: respawn limit needs COUNT INTERVAL' % where)
        elif stanza == 'kill timeout' and not value.isdigit():
            problems.append('%s: kill timeout needs seconds' % where)
        elif stanza == 'chdir' and not value.startswith('/'):
            problems.append('%s: chdir needs an absolute path' % where)
        elif stanza == 'description' and not re.fullmatch(r'"[^"]+"', value):
            problems.append('%s: description needs a quoted text' % where)
        elif stanza == 'respawn' and value:
            problems.append('%s: respawn takes no argument' % where)
    if in_script is not None:
        problems.append('%s: "script" without "end script"' % in_script)
    for stanza, values in stanzas.items():
        if len(values) > 1 and stanza not in ('env', 'export', 'emits', 'limit'):
            problems.append('%s appears %d times' % (stanza, len(values)))
    if ('exec' in stanzas) == ('script' in stanzas):
        problems.append('the job needs exactly one main process: exec or script')
    problems += ['no %s stanza' % s for s in REQUIRED if s not in stanzas]
    return Job(stanzas, main), problems


def check(text: str) -> list[str]:
    return parse(text)[1]
