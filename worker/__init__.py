"""bitmatch worker: runs the codec on one device target and reports what it computed."""
