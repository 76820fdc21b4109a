"""Volume placement: pick one backend of the pool for a new volume, and say why.

Filters reject backends with a human reason, weighers order the rest; both are
plugins (``scheduler.base``) enabled by ``[scheduler] enabled_filters`` and
``enabled_weighers``. A request may carry its own ``requirements`` and ``rank``
expressions (``scheduler.expressions``), compiled once and never ``eval``-ed.

Example::

    from gridcentric_storage.db import api as db
    from gridcentric_storage.scheduler import RequestSpec, Scheduler

    scheduler = Scheduler()                      # once per service
    spec = RequestSpec.from_volume_request(body)  # 400 on bad expressions
    placement = scheduler.select(spec, db.backend_get_all())
    LOG.info('Placed volume on %(backend)s: %(weights)s', placement.explain())
"""

from gridcentric_storage.common.exception import UnknownPlugin
from gridcentric_storage.scheduler.expressions import (
                                                       EvaluationError,
                                                       Expression,
                                                       compile_expression,
)
from gridcentric_storage.scheduler.request import RequestSpec
from gridcentric_storage.scheduler.scheduler import Placement, Scheduler

__all__ = ['EvaluationError', 'Expression', 'Placement', 'RequestSpec', 'Scheduler',
           'UnknownPlugin', 'compile_expression']
