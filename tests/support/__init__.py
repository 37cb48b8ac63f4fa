"""Test support: an in-memory Kafka (fake_kafka.py) for unit tests of the runtime."""
