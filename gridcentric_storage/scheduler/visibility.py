"""What a project member may learn about the backend pool through placement.

Backends are the cloud's plumbing: their names, hosts, capacity figures and
disable reasons are for administrators. A member still places volumes with
``tags``, ``role``, ``availability_zone``, ``capabilities`` and the
``requirements``/``rank`` expressions, so two leaks must be closed:

* an expression reading a hidden attribute (``host == "node-3"``) would
  answer yes/no questions about it, one volume create at a time: members'
  expressions may only name :data:`MEMBER_NAMES` (and ``capabilities.KEY``,
  which is what their ``capabilities`` field asks about anyway);
* the "no backend fits" error names every backend and why it was rejected:
  members get :func:`member_error`, which speaks only of their own request.

Example: a member's ``requirements: 'host == "node-3"'`` is refused with a
403 before placement; an administrator's is evaluated as written.
"""

from collections.abc import Iterator

from gridcentric_storage.common import exception
from gridcentric_storage.scheduler.expression_parser import (
    Binary,
    Logical,
    Name,
    Node,
    Unary,
)
from gridcentric_storage.scheduler.expressions import Expression
from gridcentric_storage.scheduler.request import RequestSpec

__all__ = ['MEMBER_NAMES', 'check_member_expression', 'check_member_request',
           'member_error']

#: Backend attributes that describe what a volume asks for, not the pool.
MEMBER_NAMES = frozenset(('role', 'cost', 'tags', 'availability_zone'))


def names_in(node: Node) -> Iterator[str]:
    if isinstance(node, Name):
        yield node.key
    elif isinstance(node, Unary):
        yield from names_in(node.operand)
    elif isinstance(node, Binary):
        yield from names_in(node.left)
        yield from names_in(node.right)
    elif isinstance(node, Logical):
        for operand in node.operands:
            yield from names_in(operand)


def check_member_expression(expression: Expression | None, field: str) -> None:
    if expression is None:
        return
    hidden = sorted(set(names_in(expression.tree)) - MEMBER_NAMES)
    if hidden:
        raise exception.HiddenAttribute(field=field, allowed=', '.join(sorted(MEMBER_NAMES)),
                              names=', '.join(hidden))


def check_member_request(spec: RequestSpec) -> None:
    """Raise 403 when a member's expressions read attributes hidden from them."""
    check_member_expression(spec.requirements_expr, 'requirements')
    check_member_expression(spec.rank_expr, 'rank')


def _phrases(spec: RequestSpec, rejected_by: dict[str, int]) -> list[str]:
    """Each of the member's own constraints that ruled a backend out."""
    said = {
        'role': 'role %s' % spec.role,
        'availability_zone': 'availability zone %s' % spec.availability_zone,
        'tags': 'tags %s' % ', '.join(spec.tags),
        'capabilities': 'capabilities %s' % ', '.join(
            '%s %s' % (check.key, check.wanted) for check in spec.capability_checks),
        'capacity': 'room for %d GiB' % spec.size,
        'requirements': 'requirements %s' % spec.requirements,
    }
    return [said[name] for name in rejected_by if name in said]


def member_error(error: exception.NoValidBackend, spec: RequestSpec
                 ) -> exception.NoValidBackend:
    """The same refusal, without backend names, hosts, figures or disable reasons."""
    phrases = _phrases(spec, getattr(error, 'rejected_by', {}))
    if phrases:
        text = 'no backend available to you fits %s.' % '; '.join(phrases)
    else:
        text = 'no backend is available for this volume right now.'
    return exception.NoValidBackend(reason=text)
