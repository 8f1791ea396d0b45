"""The TCP engine (RFC 9293, 7323, 2018, 6298, 5681, 6582, 5961), sans-IO."""
