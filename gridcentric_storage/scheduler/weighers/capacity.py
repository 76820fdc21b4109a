"""Spread (positive multiplier) or pack (negative) volumes by free space.

A backend whose free space is unknown (null) or reported as infinite gets
:data:`~gridcentric_storage.scheduler.base.UNKNOWN`, so it ranks below every
backend that reports a number, in both spreading and packing modes. Like
Cinder, we would rather not reward a driver for not reporting.
"""

from gridcentric_storage.scheduler.base import AttributeWeigher


class FreeCapacityWeigher(AttributeWeigher):
    """Raw weight ``free_capacity_gb``."""

    attribute = 'free_capacity_gb'
