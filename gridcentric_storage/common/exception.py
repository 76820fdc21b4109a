"""Exceptions with an HTTP status, so API faults and CLI errors share one message.

Every error a user can cause is a subclass of :class:`GCException` with a
``code`` in the 4xx range; the API turns it into a Cinder-style fault body and
anything else into an opaque 500 (logged with its traceback, never returned).
"""

from typing import Any


class GCException(Exception):
    msg_fmt = 'An unknown error occurred.'
    code = 500

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        self.kwargs = kwargs
        if message is None:
            try:
                message = self.msg_fmt % kwargs
            except (KeyError, TypeError):
                message = self.msg_fmt
        self.message = message
        super().__init__(message)


def describe(error: Exception) -> str:
    """What a failure is recorded as (``status_reason``, ``fault``): our own
    message, or the class and text of anything else."""
    if isinstance(error, GCException):
        return error.message
    return '%s: %s' % (type(error).__name__, error)


class Invalid(GCException):
    msg_fmt = 'Invalid input: %(reason)s'
    code = 400


class LiveImageIncompatible(Invalid):
    """An instance cannot hold a live image (other RAM size, other devices)."""

    msg_fmt = 'Live image %(id)s cannot be resumed as this instance: %(reason)s'


class ValidationError(Invalid):
    msg_fmt = 'Invalid input for field %(field)s: %(reason)s'


class InvalidDriverOptions(Invalid):
    msg_fmt = 'Invalid options for driver %(driver)s: %(reason)s'


class UnknownDriver(Invalid):
    msg_fmt = 'Unknown driver %(driver)s; available: %(available)s'


class InvalidExpression(Invalid):
    msg_fmt = 'Invalid expression %(expression)r: %(reason)s'


class InvalidState(GCException):
    msg_fmt = '%(resource)s %(id)s is %(state)s; %(reason)s'
    code = 409


class Conflict(GCException):
    msg_fmt = 'Conflict: %(reason)s'
    code = 409


class Duplicate(Conflict):
    msg_fmt = '%(resource)s with name %(name)r already exists'


class BackendInUse(Conflict):
    msg_fmt = 'Backend %(id)s holds %(count)d volume(s); delete or migrate them first'


class NotAuthorized(GCException):
    msg_fmt = 'Not authorized.'
    code = 401


class Forbidden(GCException):
    msg_fmt = 'Policy does not allow %(action)s to be performed.'
    code = 403


class NotFound(GCException):
    msg_fmt = 'Resource could not be found.'
    code = 404


class BackendNotFound(NotFound):
    msg_fmt = 'Backend %(id)s could not be found.'


class VolumeNotFound(NotFound):
    msg_fmt = 'Volume %(id)s could not be found.'


class ServiceNotFound(NotFound):
    msg_fmt = 'No compute service %(host)s is registered.'


class NoValidBackend(GCException):
    """No backend passed the filters; ``reasons`` maps backend name to why."""

    msg_fmt = 'No valid backend was found. %(reason)s'
    code = 400


class NoComputeService(GCException):
    msg_fmt = 'No compute service is up to own the backend: %(reason)s'
    code = 409


class DriverError(GCException):
    """A backend driver failed; the message is safe to show to the user."""

    msg_fmt = 'Backend driver error: %(reason)s'
    code = 500


class NBDError(DriverError):
    """qemu-nbd (the data path of a qcow2 volume's stream) failed or misbehaved."""



class BackendSetupFailed(Invalid):
    msg_fmt = 'Backend %(name)s could not be set up on host %(host)s: %(reason)s'


class ServiceUnavailable(GCException):
    msg_fmt = 'Service unavailable: %(reason)s'
    code = 503


class LengthRequired(GCException):
    msg_fmt = 'A Content-Length header is required (chunked uploads are not accepted).'
    code = 411


class NoHypervisor(Conflict):
    """Servers and live images need a hypervisor the host does not have."""

    msg_fmt = 'No hypervisor on host %(host)s: %(reason)s'


class RequestTooLarge(GCException):
    msg_fmt = 'The request body is %(size)d bytes; the limit is %(limit)d.'
    code = 413


class QuotaExceeded(GCException):
    msg_fmt = 'Quota exceeded: %(reason)s'
    code = 413


class HookFailed(GCException):
    msg_fmt = 'Hook %(hook)s failed: %(reason)s'
    code = 409


class NotConnectable(Conflict):
    msg_fmt = ('volumes of this backend cannot be opened on a host (no os-brick connector '
               'for %(volume_type)s connections), so they cannot be streamed or attached')


class HiddenAttribute(Forbidden):
    msg_fmt = ('%(field)s may only use %(allowed)s and capabilities.KEY; %(names)s '
               'are visible to administrators only')


class UnknownPlugin(GCException):
    """``enabled_filters``/``enabled_weighers`` names a plugin nobody provides."""

    msg_fmt = ('Unknown scheduler %(kind)s %(name)r in [scheduler] enabled_%(kind)ss; '
               'available: %(available)s')


class AttachmentNotFound(NotFound):
    msg_fmt = 'Attachment %(id)s could not be found.'


class ServerNotFound(NotFound):
    msg_fmt = 'Server %(id)s could not be found.'


class LiveImageNotFound(NotFound):
    msg_fmt = 'Live image %(id)s could not be found.'


class SnapshotNotFound(NotFound):
    msg_fmt = 'Snapshot %(id)s could not be found.'


class CacheEntryNotFound(NotFound):
    msg_fmt = 'Image cache entry %(id)s could not be found.'


class LiveImageFilesMissing(DriverError):
    """The live image's files are gone (discarded, or never blessed here)."""

    msg_fmt = 'Live image %(id)s cannot be used: %(reason)s'
    code = 404


class QmpError(DriverError):
    """A QMP command failed or QEMU could not be reached; ``error_class`` from QEMU."""

    def __init__(self, message: str | None = None, **kwargs: Any) -> None:
        # error_class stays a keyword so the error is rebuilt whole across RPC.
        super().__init__(message, **kwargs)
        self.error_class: str | None = kwargs.get('error_class')


class IllegalTransition(Conflict):
    """A move its state machine (``common.states``) does not allow."""

    msg_fmt = '%(resource)s %(id)s cannot go from %(current)s to %(new)s'


class NovaInstanceNotFound(NotFound):
    """A Nova instance to bless has no libvirt domain on the host asked to bless it."""

    msg_fmt = 'Instance %(id)s has no libvirt domain on its compute host.'


class FileBackedMemoryRequired(Invalid):
    """Blessing a Nova instance needs its RAM in a shared file the host can copy."""

    msg_fmt = ('Instance %(id)s cannot be blessed: its memory is not file-backed. Set '
               '[libvirt] file_backed_memory = <MiB> in nova.conf on its compute host, with '
               '[DEFAULT] ram_allocation_ratio = 1.0 and reserved_host_memory_mb = 0, '
               'restart nova-compute, then hard-reboot or re-create the instance.')


class NovaBlessUnsupported(Invalid):
    """A Nova instance whose layout bless cannot copy yet (volumes, rbd, NUMA)."""

    msg_fmt = 'Instance %(id)s cannot be blessed: %(reason)s'


class QosSpecsNotFound(NotFound):
    msg_fmt = 'QoS specs %(id)s could not be found.'


class InvalidQosSpecs(Invalid):
    msg_fmt = 'Invalid QoS specs: %(reason)s'


class QosSpecsInUse(Conflict):
    """QoS specs still associated with volumes or backends cannot go (without force)."""

    msg_fmt = 'QoS specs %(id)s are associated with %(what)s; disassociate them first.'


class QosNotSupported(DriverError):
    """A volume or hypervisor driver cannot enforce (some of) a volume's QoS limits."""

    msg_fmt = 'QoS not enforced by %(driver)s: %(reason)s'


class ServerMigrationRefused(Invalid):
    """A server cannot move to the other host (its memory or disks are not there)."""

    msg_fmt = 'Server %(id)s cannot be migrated: %(reason)s'


class LiveMigrationNotSupported(Conflict):
    """The server's hypervisor driver cannot move an attached volume while the guest runs."""

    msg_fmt = 'Live volume migration is not supported by %(driver)s: %(reason)s'
