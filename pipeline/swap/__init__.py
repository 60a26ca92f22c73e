"""Hot swap: follow the registry's champion (``watcher``), re-prime device states from their
ring buffers (``priming``), hear the trainer's announcements (``control``)."""
