"""Inverted index: (org, metric, tag, index bucket) -> roaring bitmap of sids."""
