"""What drivers receive: Cinder-shaped volume and snapshot references.

Cinder drivers read ``volume.id``, ``volume['size']`` and ``volume.name``
(``volume-<id>``); these small classes give both spellings over a DB dict.
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


class SnapshotRef(_Ref):
    _name_template = 'snapshot-%s'
