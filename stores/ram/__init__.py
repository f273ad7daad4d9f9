"""RAM store: the last few hours of raw points in columnar numpy blocks (DESIGN §4)."""
