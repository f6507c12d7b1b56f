"""Power control: the engine that drives transitions to verified power states."""
