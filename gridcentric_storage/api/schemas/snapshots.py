from gridcentric_storage.api.schemas import common

create = common.envelope('snapshot', {
    'volume_id': common.UUID,
    'name': common.OPTIONAL_NAME,
    'force': {'type': 'boolean'},
}, required=['volume_id'])
