"""What the driver says it can do (Cinder stats): multiattach, QoS, protocol...

The request's specs were compiled by ``RequestSpec`` (see
``request.compile_capability`` for the operators); this filter only runs them.
"""

from gridcentric_storage.scheduler.base import Backend, BaseFilter
from gridcentric_storage.scheduler.request import RequestSpec


class CapabilitiesFilter(BaseFilter):
    """Every requested capability must match the backend's last reported stats."""

    def applies(self, request: RequestSpec) -> bool:
        return bool(request.capability_checks)

    def passes(self, backend: Backend, request: RequestSpec) -> str | None:
        capabilities = backend.get('capabilities') or {}
        for check in request.capability_checks:
            reason = check.reason(capabilities)
            if reason is not None:
                return reason
        return None

    def flags(self, backends: list[Backend], request: RequestSpec) -> list[bool]:
        capabilities = [backend['capabilities'] or {} for backend in backends]
        flags = [True] * len(backends)
        for key, _, test, sure in request.capability_checks:
            flags = [ok and ((value := caps.get(key)) is sure or test(value))
                     for ok, caps in zip(flags, capabilities, strict=True)]
        return flags
