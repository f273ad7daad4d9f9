"""Tag index: sid -> series identity, per-org metric catalog, per-metric tag catalog."""
