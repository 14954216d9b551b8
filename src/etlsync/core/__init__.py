"""The pipeline kernel: batches, stage contracts, channels, checkpoints and the runner."""
