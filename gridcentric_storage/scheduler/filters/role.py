"""Keep volumes on backends meant for them: ``san`` for disks, ``repository`` for images."""

from gridcentric_storage.scheduler.base import Backend, BaseFilter
from gridcentric_storage.scheduler.request import RequestSpec


class RoleFilter(BaseFilter):
    """Backend ``role`` must equal the request's; a request without a role takes any."""

    def applies(self, request: RequestSpec) -> bool:
        return request.role is not None

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        role = backend.get('role')
        if request.role is None or role == request.role:
            return None
        return 'role %s != %s' % (role, request.role)

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        role = request.role
        return [backend['role'] == role for backend in backends]
