"""[live_image_store]: where blessed live images are published for other hosts.

A host with this group enabled publishes the live images it blesses to an RBD
pool (``compute.live_image_publish``) and can launch clones of any published
live image, mapping its RAM lazily through an ``rbd-fuse`` mount
(``compute.live_image_mounts``).
"""

from oslo_config import cfg

store_group = cfg.OptGroup('live_image_store', title='Shared store of live images (Ceph)')

store_opts = [
    cfg.BoolOpt('enabled', default=False,
                help='Publish live images blessed on this host to the Ceph pool below '
                     'and launch clones of published live images of other hosts here.'),
    cfg.StrOpt('ceph_conf', default='/etc/ceph/ceph.conf',
               help='ceph.conf of the cluster that holds published live images.'),
    cfg.StrOpt('pool', default='rbd',
               help='RBD pool of published live images (images gc-live-<id>, objects '
                    'gc-live-<id>.state and .layout).'),
    cfg.StrOpt('user', default='admin',
               help='Ceph client name without "client." (librados and rbd-fuse).'),
    cfg.StrOpt('keyring', default=None,
               help='Keyring of that client; unset: the one ceph.conf names.'),
    cfg.StrOpt('mount_root', default=None,
               help='Where this host mounts published RAM (one rbd-fuse mount per live '
                    'image) and caches their state and layout; unset: '
                    '<state_path>/live-image-store.'),
    cfg.StrOpt('rbd_fuse', default='rbd-fuse',
               help='The rbd-fuse executable (Debian: rbd-fuse).'),
    cfg.IntOpt('local_slack', default=4, min=0,
               help='Clones of a published live image stay on its blessing host (files '
                    'local, the fastest launch) while it runs fewer than this many servers '
                    'more than the least loaded host with the store (API side).'),
    cfg.IntOpt('timeout', default=30, min=1,
               help='Seconds a Ceph operation or a mount may take before it fails.'),
]


def register_opts(conf: cfg.ConfigOpts) -> None:
    conf.register_group(store_group)
    conf.register_opts(store_opts, group=store_group)


def list_opts() -> list[tuple[cfg.OptGroup, list[cfg.Opt]]]:
    return [(store_group, store_opts)]
