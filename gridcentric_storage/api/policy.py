"""The policy enforcer; one per process, rules from ``policies/``."""

import threading
from typing import Any

from oslo_config import cfg
from oslo_policy import policy

from gridcentric_storage.api import policies
from gridcentric_storage.common import exception

CONF = cfg.CONF
_enforcer: policy.Enforcer | None = None
_lock = threading.Lock()


def get_enforcer() -> policy.Enforcer:
    global _enforcer
    with _lock:
        if _enforcer is None:
            _enforcer = policy.Enforcer(CONF)
            _enforcer.register_defaults(policies.list_rules())
        return _enforcer


def reset() -> None:
    global _enforcer
    with _lock:
        _enforcer = None


def authorize(ctxt: Any, action: str, target: dict[str, Any] | None = None) -> None:
    """Raise Forbidden unless ``ctxt`` may do ``action`` on ``target``."""
    target = target or {'project_id': ctxt.project_id}
    if not get_enforcer().authorize(action, target, ctxt, do_raise=False):
        raise exception.Forbidden(action=action)


def check(ctxt: Any, action: str, target: dict[str, Any] | None = None) -> bool:
    target = target or {'project_id': ctxt.project_id}
    return bool(get_enforcer().authorize(action, target, ctxt, do_raise=False))
