from oslo_policy import policy

from gridcentric_storage.api.policies import base


def _rule(name: str, check: str, description: str, method: str, path: str
          ) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(name, check, description,
                                        [{'method': method, 'path': path}])


rules = [
    _rule('server:create', base.ANY_MEMBER, 'Start a server.', 'POST', '/v1/servers'),
    _rule('server:create:forced_host', base.ADMIN,
          'Name the host of a new server or clone (availability_zone "az:host").',
          'POST', '/v1/servers'),
    _rule('server:get_all', base.ANY_MEMBER, "List the project's servers.", 'GET',
          '/v1/servers'),
    _rule('server:get_all_tenants', base.ADMIN, "See every project's servers.", 'GET',
          '/v1/servers'),
    _rule('server:get', base.ADMIN_OR_OWNER, 'Show a server.', 'GET', '/v1/servers/{id}'),
    _rule('server:delete', base.ADMIN_OR_OWNER, 'Delete a server.', 'DELETE',
          '/v1/servers/{id}'),
    _rule('server:console', base.ADMIN_OR_OWNER, "Read a server's console output.", 'POST',
          '/v1/servers/{id}/action'),
    _rule('server:pause', base.ADMIN_OR_OWNER, "Pause or unpause a server's vCPUs.",
          'POST', '/v2.1/servers/{id}/action'),
    _rule('server:attach_volume', base.ADMIN_OR_OWNER, 'Attach or detach a volume.',
          'POST', '/v1/servers/{id}/os-volume_attachments'),
    _rule('server:migrate', base.ADMIN,
          'Live-migrate a running server to another host (co_migrate): where servers run '
          'is the cloud\'s plumbing.', 'POST', '/v2.1/servers/{id}/action'),
    _rule('live_image:bless', base.ADMIN_OR_OWNER, 'Bless a running server.', 'POST',
          '/v1/live-images'),
    _rule('live_image:get_all', base.ANY_MEMBER, "List the project's live images.", 'GET',
          '/v1/live-images'),
    _rule('live_image:get', base.ADMIN_OR_OWNER, 'Show a live image and its clones.', 'GET',
          '/v1/live-images/{id}'),
    _rule('live_image:launch', base.ADMIN_OR_OWNER, 'Launch clones of a live image.',
          'POST', '/v1/live-images/{id}/action'),
    _rule('live_image:discard', base.ADMIN_OR_OWNER, 'Discard a live image.', 'DELETE',
          '/v1/live-images/{id}'),
    _rule('live_image:export', base.ADMIN_OR_OWNER,
          "Export a live image into its project's image store (co_export).", 'POST',
          '/v2.1/servers/{id}/action'),
    _rule('live_image:import', base.ANY_MEMBER,
          "Import an exported live image into the caller's project.", 'POST',
          '/v2.1/co-import-server'),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    return rules
