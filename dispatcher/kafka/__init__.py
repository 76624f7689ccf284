"""Kafka adapters: the only modules that import confluent_kafka's consumer and producer."""
