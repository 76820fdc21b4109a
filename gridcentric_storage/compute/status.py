"""Status writes of servers and live images, checked against their tables.

Only ``compute.api`` and ``nova.api`` (API side), ``compute.servers``,
``compute.live_images``, ``compute.nova_live_images`` and, for imports,
``compute.manager`` (on the host) call these.
"""

from typing import Any

from gridcentric_storage.common import states as st
from gridcentric_storage.common.states import LiveImageStatus
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage, Server


def set_server(server_id: str, values: dict[str, Any]) -> Server:
    """Write a server's row, checking a status or task move against its table."""
    current = db_servers.server_get(server_id)
    if 'status' in values:
        st.SERVER.check(server_id, current['status'], values['status'])
    if 'task_state' in values:
        st.SERVER_TASK.check(server_id, current['task_state'] or '',
                             values['task_state'] or '')
    return db_servers.server_update(server_id, values)


def set_live_image(live_image_id: str, new: LiveImageStatus, expected: str, **values: Any
                   ) -> LiveImage:
    """Move a live image from ``expected`` to ``new`` (one compare-and-swap)."""
    st.LIVE_IMAGE.check(live_image_id, expected, new)
    return db_servers.live_image_update(live_image_id, dict(values, status=new),
                                        expected_status=(expected,))
