"""Operator intent and liveness: a disabled or silent backend gets no new volumes."""

import datetime

from gridcentric_storage.scheduler.base import Backend, BaseFilter
from gridcentric_storage.scheduler.request import RequestSpec


class EnabledFilter(BaseFilter):
    """Only backends an administrator left ``enabled``; shows why one was disabled."""

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        state = backend.get('state')
        if state == 'enabled':
            return None
        why = backend.get('disabled_reason')
        return '%s: %s' % (state, why) if why else str(state)

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        return [backend['state'] == 'enabled' for backend in backends]


class UpFilter(BaseFilter):
    """Only backends whose driver reported stats recently (``status`` from the DB).

    A backend nobody reports for may sit on a dead host: placing a volume
    there would leave it ``creating`` until the host returns.
    """

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        status = backend.get('status')
        if status == 'up':
            return None
        return 'status %s (%s)' % (status, _staleness(backend.get('stats_updated_at')))

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        return [backend['status'] == 'up' for backend in backends]


def _staleness(updated_at: object) -> str:
    if updated_at is None:
        return 'never reported stats'
    if not isinstance(updated_at, datetime.datetime):
        return 'last stats at %s' % updated_at
    now = datetime.datetime.now(datetime.UTC)
    if updated_at.tzinfo is None:       # the DB layer stores naive UTC
        updated_at = updated_at.replace(tzinfo=datetime.UTC)
    return 'no stats for %d s' % max(0, int((now - updated_at).total_seconds()))
