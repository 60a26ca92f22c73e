"""Device-state persistence: checkpoints to a compacted topic (``checkpoint``) and a worker's
devices to snapshots and back (``recovery``)."""
