"""Built-in placement weighers, one small module each (see ``scheduler.base``).

Each is registered in setup.cfg under ``gridcentric_storage.scheduler.weighers``,
enabled by ``[scheduler] enabled_weighers`` and scaled by
``[scheduler] <name>_weight_multiplier``.
"""
