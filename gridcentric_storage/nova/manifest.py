"""What a blessed Nova instance left on its host: the contract between bless and spawn.

``nova.bless`` (in gridcentric-compute) writes ``nova.json`` into the live
image's directory as its last step, so a manifest exists only for a
complete live image; the virt driver in nova-compute reads it before it
resumes a clone, and refuses when the manifest is missing, names another
project, or its files changed. Paths are absolute on this host and never
leave it (members see none of this).
"""

import dataclasses
import json
import os
from typing import Any

from gridcentric_storage.common import exception

__all__ = ['FILENAME', 'NovaLiveImage', 'read', 'write']

FILENAME = 'nova.json'
_VERSION = 1


@dataclasses.dataclass(frozen=True)
class NovaLiveImage:
    live_image_id: str
    project_id: str
    #: the Nova instance that was blessed
    source_instance: str
    #: the frozen RAM; clones map it MAP_PRIVATE (share=off), so it never changes
    ram_path: str
    ram_size: int
    #: the RAMBlock id that guest RAM has in ``state_path``; a clone's
    #: memory backend must carry this id, or QEMU refuses the stream
    ram_block: str
    #: device state: a migration stream saved with x-ignore-shared
    state_path: str
    #: guest disk target (``vda`` ...) -> a qcow2 file in the live image
    #: directory whose whole backing chain is also there; clones get overlays
    disks: dict[str, str]
    #: the blessed domain's migratable XML, for the device layout clones must match
    domain_xml_path: str
    #: sha256 of ``ram_path`` when bless computed it (``[compute] checksum_ram``)
    ram_sha256: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {'version': _VERSION, **dataclasses.asdict(self)}


def write(directory: str, manifest: NovaLiveImage) -> str:
    """Write ``nova.json`` atomically (it marks the live image complete); its path."""
    path = os.path.join(directory, FILENAME)
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        json.dump(manifest.to_json(), f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def read(live_images_path: str, live_image_id: str) -> NovaLiveImage:
    """The manifest of a live image on this host; LiveImageFilesMissing when there is
    none, it cannot be parsed, or a file it names is gone."""
    directory = os.path.join(live_images_path, live_image_id)
    path = os.path.join(directory, FILENAME)
    try:
        with open(path) as f:
            data = json.load(f)
        if data.pop('version', None) != _VERSION:
            raise ValueError('unknown manifest version')
        manifest = NovaLiveImage(**data)
    except FileNotFoundError:
        raise exception.LiveImageFilesMissing(
            id=live_image_id, reason='this host holds no complete copy of it') from None
    except (OSError, ValueError, TypeError) as e:
        raise exception.LiveImageFilesMissing(id=live_image_id,
                                              reason='unreadable manifest: %s' % e) from e
    if manifest.live_image_id != live_image_id:
        raise exception.LiveImageFilesMissing(id=live_image_id,
                                              reason='the manifest names another live image')
    for needed in (manifest.ram_path, manifest.state_path, *manifest.disks.values()):
        if not os.path.isfile(needed):
            raise exception.LiveImageFilesMissing(id=live_image_id,
                                                  reason='a file of it is gone')
    return manifest
