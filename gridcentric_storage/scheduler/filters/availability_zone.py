"""Failure domains: a volume must live in the zone of the server that will use it."""

from gridcentric_storage.scheduler.base import Backend, BaseFilter
from gridcentric_storage.scheduler.request import RequestSpec


class AvailabilityZoneFilter(BaseFilter):
    """Backend ``availability_zone`` must equal the request's, when it names one."""

    def applies(self, request: RequestSpec) -> bool:
        return request.availability_zone is not None

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        zone = backend.get('availability_zone')
        if request.availability_zone is None or zone == request.availability_zone:
            return None
        return 'availability zone %s != %s' % (zone, request.availability_zone)

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        zone = request.availability_zone
        return [backend['availability_zone'] == zone for backend in backends]
