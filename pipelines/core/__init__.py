"""The shared machinery of every stage: storage, configuration, run context, checks, text,
PII engine, hashing, rendering, partitions, the output lock and progress."""
