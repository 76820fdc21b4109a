"""Status writes of servers and live images, checked against their tables.

Only ``compute.api`` and ``nova.api`` (API side), ``compute.servers``,
``compute.live_images``, ``compute.nova_live_images`` and, for imports,
``compute.manager`` (on the host) call these.
"""

from typing import Any

from gridcentric_storage.common import exception
from gridcentric_storage.common import states as st
from gridcentric_storage.common.states import LiveImageStatus
from gridcentric_storage.db import servers as db_servers
from gridcentric_storage.db.records import LiveImage


def set_server(server_id: str, values: dict[str, Any]) -> None:
    """Write a server's row if its status and task may move to the ones in
    ``values`` (their tables): one compare-and-swap, so a move made meanwhile by
    another writer (a delete, a failure) is never overwritten."""
    allowed: dict[str, tuple[str | None, ...]] = {}
    if 'status' in values:
        allowed['status'] = st.SERVER.sources(values['status'])
    if 'task_state' in values:
        tasks = st.SERVER_TASK.sources(values['task_state'] or st.ServerTask.NONE)
        # no task is NULL in the table
        allowed['task_state'] = tasks + ((None,) if st.ServerTask.NONE in tasks else ())
    current = db_servers.server_move(server_id, values, allowed)
    if current is None:
        return
    if 'status' in values:
        st.SERVER.check(server_id, current['status'], values['status'])
    if 'task_state' in values:
        st.SERVER_TASK.check(server_id, current['task_state'] or st.ServerTask.NONE,
                             values['task_state'] or st.ServerTask.NONE)
    # the row read after the missed update may already hold a later, allowed move
    raise exception.IllegalTransition(resource='Server', id=server_id, current=current['status'],
                                      new=values.get('status', current['status']))


def set_live_image(live_image_id: str, new: LiveImageStatus, expected: str, **values: Any
                   ) -> LiveImage:
    """Move a live image from ``expected`` to ``new`` (one compare-and-swap)."""
    st.LIVE_IMAGE.check(live_image_id, expected, new)
    return db_servers.live_image_update(live_image_id, dict(values, status=new),
                                        expected_status=(expected,))
