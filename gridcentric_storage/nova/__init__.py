"""gridcentric-storage inside a real Nova: Cobalt's ``co_*`` actions on Nova's own instances.

Nothing here is imported by the standalone service; each piece runs in the
process named beside it, and they meet only through RPC and the files of a
live image.

``nova-api`` (paste filter, ``api_filter``)
    One filter placed after ``keystonecontext`` in Nova's
    ``[composite:openstack_compute_api_v21]`` pipelines. It answers
    ``POST /servers/{id}/action`` with a ``co_*``/``gc_*`` body, ``GET
    /gcinfo`` and ``/cobaltinfo`` (and the import and policy paths), and the
    reads Cobalt's clients make of a live image as a server; everything else
    passes to Nova untouched. It keeps no state and imports neither Nova nor
    the rest of this package's configuration: it forwards the caller's
    context (token, project, roles) over oslo.messaging to ``cobalt``.

``gridcentric-api`` (RPC endpoint ``cobalt``, topic ``[nova] cobalt_topic``)
    The API side of live images of Nova instances: the same state checks and
    live-image rows as ``compute.api``, with Nova read and written through
    its public REST API under the caller's token (``nova.client``). Clones are
    created by Nova's ``POST /servers`` (quotas, policy, placement are
    Nova's), carrying metadata that names the live image and a scheduler hint
    that keeps them on the live image's host (``nova.scheduler_filter``).

``gridcentric-compute`` (compute RPC ``bless_nova_instance``, ``nova.bless``)
    On the host of a Nova instance whose RAM is a shared file (``[libvirt]
    file_backed_memory``): finds the domain by instance UUID, pauses it,
    saves device state with ``x-ignore-shared``, copies RAM and disks into
    the live image directory, resumes it, and writes the manifest
    (``nova.manifest``) that the virt driver reads.

``nova-compute`` (virt driver ``nova.virt.driver``)
    A subclass of Nova's libvirt driver. Nova 34 imports only
    ``'nova.virt.' + compute_driver``, so the package installs a ``.pth``
    hook (``nova.virt_alias``) that makes ``nova.virt.gridcentric`` an alias
    of ``gridcentric_storage.nova.virt``: ``compute_driver =
    gridcentric.LibvirtDriver``. Its ``spawn`` resumes an instance whose
    metadata names a live image (after checking the manifest: same project,
    files intact) instead of booting it; every other instance takes the
    stock path.
"""
