from oslo_policy import policy

from gridcentric_storage.api.policies import base

_PATH = '/v1/volumes'


def _action(name: str, check: str, description: str) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault('volume:%s' % name, check, description,
                                        [{'method': 'POST', 'path': _PATH + '/{volume_id}/action'}])


rules = [
    policy.DocumentedRuleDefault('volume:create', base.ANY_MEMBER, 'Create a volume.',
                                 [{'method': 'POST', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:create_on_backend', base.ADMIN,
                                 'Create a volume on a named backend (bypasses placement).',
                                 [{'method': 'POST', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:placement_details', base.ADMIN,
                                 'Read every backend attribute in requirements/rank '
                                 'expressions and see which backend rejected a volume and '
                                 'why (others see only their own constraints).',
                                 [{'method': 'POST', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:get_all', base.ANY_MEMBER,
                                 "List the project's volumes.",
                                 [{'method': 'GET', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:get_all_tenants', base.ADMIN,
                                 "List every project's volumes (?all_tenants=1).",
                                 [{'method': 'GET', 'path': _PATH}]),
    policy.DocumentedRuleDefault('volume:get', base.ADMIN_OR_OWNER, 'Show a volume.',
                                 [{'method': 'GET', 'path': _PATH + '/{volume_id}'}]),
    policy.DocumentedRuleDefault('volume:delete', base.ADMIN_OR_OWNER, 'Delete a volume.',
                                 [{'method': 'DELETE', 'path': _PATH + '/{volume_id}'}]),
    policy.DocumentedRuleDefault('volume:force_delete', base.ADMIN,
                                 'Delete an attached volume (?force=true), ending its '
                                 'attachments.',
                                 [{'method': 'DELETE', 'path': _PATH + '/{volume_id}'}]),
    _action('extend', base.ADMIN_OR_OWNER, 'Extend a volume (os-extend).'),
    _action('revert', base.ADMIN_OR_OWNER, 'Revert a volume to one of its snapshots.'),
    _action('force_detach', base.ADMIN, 'End every attachment of a volume (os-force_detach).'),
    _action('upload_image', base.ADMIN_OR_OWNER,
            'Write a volume out as an image (os-volume_upload_image).'),
    _action('migrate', base.ADMIN,
            'Move a volume to another backend (migrate, os-migrate_volume).'),
    policy.DocumentedRuleDefault('volume:download', base.ADMIN_OR_OWNER,
                                 'Read a whole volume as a byte stream.',
                                 [{'method': 'GET', 'path': _PATH + '/{volume_id}/data'}]),
    policy.DocumentedRuleDefault('volume:upload', base.ADMIN_OR_OWNER,
                                 'Write a whole volume from a byte stream.',
                                 [{'method': 'PUT', 'path': _PATH + '/{volume_id}/data'}]),
]

_SNAPSHOTS = '/v1/snapshots'
_ATTACHMENTS = '/v1/attachments'
_CACHE = '/v1/image-cache'


def _rule(name: str, check: str, description: str, method: str, path: str
          ) -> policy.DocumentedRuleDefault:
    return policy.DocumentedRuleDefault(name, check, description,
                                        [{'method': method, 'path': path}])


rules += [
    _rule('snapshot:create', base.ANY_MEMBER, 'Snapshot a volume.', 'POST', _SNAPSHOTS),
    _rule('snapshot:get_all', base.ANY_MEMBER, "List the project's snapshots.", 'GET',
          _SNAPSHOTS),
    _rule('snapshot:get', base.ADMIN_OR_OWNER, 'Show a snapshot.', 'GET',
          _SNAPSHOTS + '/{snapshot_id}'),
    _rule('snapshot:delete', base.ADMIN_OR_OWNER, 'Delete a snapshot.', 'DELETE',
          _SNAPSHOTS + '/{snapshot_id}'),
    _rule('attachment:create', base.ANY_MEMBER, 'Attach a volume to a compute host.', 'POST',
          _ATTACHMENTS),
    _rule('attachment:create_on_host', base.ADMIN,
          'Attach a volume on a named compute host (members attach on the host that '
          'owns the volume).', 'POST', _ATTACHMENTS),
    _rule('attachment:get_all', base.ANY_MEMBER, "List the project's attachments.", 'GET',
          _ATTACHMENTS),
    _rule('attachment:get', base.ADMIN_OR_OWNER, 'Show an attachment.', 'GET',
          _ATTACHMENTS + '/{attachment_id}'),
    _rule('attachment:delete', base.ADMIN_OR_OWNER, 'Detach a volume.', 'DELETE',
          _ATTACHMENTS + '/{attachment_id}'),
    _rule('image_cache:get_all', base.ADMIN, 'List the image template cache.', 'GET',
          _CACHE),
    _rule('image_cache:delete', base.ADMIN, 'Purge image cache entries.', 'DELETE',
          _CACHE + '/{entry_id}'),
]


def list_rules() -> list[policy.DocumentedRuleDefault]:
    return rules
