from oslo_config import cfg

scheduler_group = cfg.OptGroup('scheduler', title='Volume placement options')

scheduler_opts = [
    cfg.ListOpt('enabled_filters',
                default=['enabled', 'up', 'role', 'availability_zone', 'tags',
                         'capabilities', 'capacity', 'requirements'],
                help='Filters (entry points in gridcentric_storage.scheduler.filters) '
                     'every backend must pass, applied in this order.'),
    cfg.ListOpt('enabled_weighers',
                default=['cost', 'free_capacity', 'volume_count', 'rank'],
                help='Weighers (entry points in gridcentric_storage.scheduler.weighers) '
                     'that order the backends that passed.'),
    cfg.FloatOpt('cost_weight_multiplier', default=1000.0,
                 help='Weight of the (normalised, inverted) backend cost; the '
                      'default makes cost dominate, as an operator-set priority.'),
    cfg.FloatOpt('free_capacity_weight_multiplier', default=1.0,
                 help='Positive spreads volumes to the freest backend, negative '
                      'packs them.'),
    cfg.FloatOpt('volume_count_weight_multiplier', default=-1.0,
                 help='Negative prefers backends holding fewer volumes.'),
    cfg.FloatOpt('rank_weight_multiplier', default=100.0,
                 help='Weight of a request\'s "rank" expression (normalised).'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(scheduler_group)
    conf.register_opts(scheduler_opts, group=scheduler_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(scheduler_group, scheduler_opts)]
