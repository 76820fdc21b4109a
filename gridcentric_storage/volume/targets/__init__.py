"""Block-export helpers that volume drivers share (like ``cinder.volume.targets``)."""
