"""Image services that volume drivers read images from and write images to."""
