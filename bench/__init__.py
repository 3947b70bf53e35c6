"""Benchmarks and the prepared GPU check (scripts; `bench.tiny_model` is shared between them)."""
