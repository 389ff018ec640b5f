"""Step progress of runs, read back from the local store, Jaeger or Tempo."""
