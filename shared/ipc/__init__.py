"""Inter-process plumbing: the message schema, its msgpack codec, endpoint names."""
