"""Operator-assigned labels ("ssd", "replicated", "tenant-x"): every requested tag is needed."""

from gridcentric_storage.scheduler.base import Backend, BaseFilter
from gridcentric_storage.scheduler.request import RequestSpec


class TagsFilter(BaseFilter):
    """Backend ``tags`` must include all of the request's tags; reasons list the missing."""

    def applies(self, request: RequestSpec) -> bool:
        return bool(request.tags)

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        have = backend.get('tags') or ()
        missing = [tag for tag in request.tags if tag not in have]
        return 'missing tags: %s' % ', '.join(missing) if missing else None

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        if len(request.tags) == 1:
            tag = request.tags[0]
            return [tag in backend['tags'] for backend in backends]
        wanted = frozenset(request.tags)
        return [wanted.issubset(backend['tags']) for backend in backends]
