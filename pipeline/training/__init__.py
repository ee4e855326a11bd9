"""Training: the Ray Train worker loop, schedules, resumable batches, task adapters."""
