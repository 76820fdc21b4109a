"""Built-in placement filters, one small module each (see ``scheduler.base``).

Each is registered in setup.cfg under ``gridcentric_storage.scheduler.filters``
and enabled, in order, by ``[scheduler] enabled_filters``.
"""
