"""gridcentric-storage: storage backend pool, fast volumes and live VM images."""
