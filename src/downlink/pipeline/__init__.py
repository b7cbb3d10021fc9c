"""Processing after the ack: the consumer runner, reprocessing and the job runner."""
