"""Past one process: Ray for parallel folds and sharded prediction, a SkyPilot cluster's machines."""
