"""Balance the number of volumes, not just bytes: many small volumes load a backend too."""

from gridcentric_storage.scheduler.base import AttributeWeigher


class VolumeCountWeigher(AttributeWeigher):
    """Raw weight ``volume_count``; the default multiplier (-1) prefers fewer volumes."""

    attribute = 'volume_count'
    missing = 0.0
