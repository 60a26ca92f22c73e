"""The confluent-kafka (librdkafka) clients behind harstream's transport protocols.

Chosen by ``[kafka] client = "confluent"`` and made through :mod:`streams.clients`, never
imported otherwise (confluent-kafka is the optional ``fast`` extra). Same semantics as the
kafka-python clients: ``source`` (a consumer-group member with manual commits), ``sink`` (a
producer with the Java client's murmur2 partitioner), ``table`` (a compacted topic) and
``admin`` (topics).
"""
