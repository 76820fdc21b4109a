"""Operator preference: ``cost`` is a priority the operator sets per backend.

With the default multiplier (1000) cost dominates every other weigher, so
cheaper backends fill first and the others only break ties among equals.
"""

from gridcentric_storage.scheduler.base import AttributeWeigher


class CostWeigher(AttributeWeigher):
    """Raw weight ``-cost``: the lower the cost, the higher the weight."""

    attribute = 'cost'
    sign = -1.0
