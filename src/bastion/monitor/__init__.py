"""Runtime detectors (extraction, stateful query, out-of-distribution), alerts and incidents."""
