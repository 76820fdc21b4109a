"""Operator hooks around live-image work, as Cobalt had them.

Executables named ``pre_<action>`` / ``post_<action>`` (action: bless,
launch, discard) in ``[compute] hooks_dir`` run with the ids in their
environment (``GC_ACTION``, ``GC_SERVER_ID``, ``GC_LIVE_IMAGE_ID``,
``GC_CLONE_ID``). A failing ``pre_`` hook stops the action; a failing
``post_`` hook is logged.
"""

import logging
import os

from oslo_config import cfg

from gridcentric_storage.common import exception, processutils

CONF = cfg.CONF
LOG = logging.getLogger(__name__)


def run(phase: str, action: str, **ids: str | None) -> None:
    path = os.path.join(CONF.compute.hooks_dir, '%s_%s' % (phase, action))
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        return
    env = dict(os.environ, GC_ACTION=action, GC_PHASE=phase)
    for key, value in ids.items():
        if value:
            env['GC_%s' % key.upper()] = value
    try:
        processutils.execute([path], env=env, timeout=CONF.compute.hook_timeout)
    except exception.DriverError as e:
        if phase == 'pre':
            raise exception.HookFailed(hook=path, reason=e.message)
        LOG.warning('Hook %s failed: %s', path, e.message)
