from gridcentric_storage.api.schemas import common

create = common.envelope('snapshot', {
    'volume_id': common.UUID,
    'name': {'type': ['string', 'null'], 'maxLength': 255},
    'force': {'type': 'boolean'},
}, required=['volume_id'])
