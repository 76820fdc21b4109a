"""Entry point for oslo-config-generator (namespace ``gridcentric_storage``)."""

from oslo_config import cfg

from gridcentric_storage.conf import (
    api,
    compute,
    default,
    image,
    libvirt,
    live_image_store,
    nova,
    qemu,
    scheduler,
    volume,
)


def list_opts() -> list[tuple[object, list[cfg.Opt]]]:
    result: list[tuple[object, list[cfg.Opt]]] = []
    for module in (default, api, compute, scheduler, volume, image, qemu, libvirt, nova,
                   live_image_store):
        result.extend(module.list_opts())
    return result


def set_lib_defaults() -> None:
    """Make the generated sample show our [database] connection default."""
    from gridcentric_storage.conf import database

    database.register_opts(cfg.CONF)
