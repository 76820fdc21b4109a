"""What drivers receive: Cinder-shaped volume and snapshot references.

Cinder drivers read ``volume.id``, ``volume['size']`` and ``volume.name``
(``volume-<id>``); these small classes give both spellings over a DB dict.

A migrated volume keeps its id while its data keeps the name the backend
gave it under the migration's temporary row (Cinder's ``name_id``). Drivers
here name backend objects after ``volume.id``, so a :class:`VolumeRef`'s
``id`` is that name id (``volume_id`` stays the row's), and a
:class:`SnapshotRef` built with the volume's ``volume_name_id`` names its
volume the same way.
"""

from collections.abc import Mapping
from typing import Any


class _Ref:
    _name_template = '%s'

    def __init__(self, values: Mapping[str, Any]) -> None:
        self._values = dict(values)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._values[key]
        except KeyError:
            raise AttributeError(key) from None

    def __getitem__(self, key: str) -> Any:
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        return getattr(self, key, default)

    @property
    def name(self) -> str:
        return self._name_template % self._values['id']

    @property
    def display_name(self) -> Any:
        return self._values.get('name')

    def __repr__(self) -> str:
        return '<%s %s>' % (type(self).__name__, self._values.get('id'))


class VolumeRef(_Ref):
    _name_template = 'volume-%s'

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        self._values['volume_id'] = values.get('id')
        if values.get('name_id'):
            self._values['id'] = values['name_id']

    @property
    def name_id(self) -> Any:
        return self._values.get('id')


class SnapshotRef(_Ref):
    _name_template = 'snapshot-%s'

    def __init__(self, values: Mapping[str, Any]) -> None:
        super().__init__(values)
        if values.get('volume_name_id'):
            self._values['volume_id'] = values['volume_name_id']
