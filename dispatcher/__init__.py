"""Kafka-native webhook dispatcher."""
