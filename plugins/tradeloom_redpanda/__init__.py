"""Stock ``redpanda`` plugin: a Kafka-protocol transport (one topic per stage boundary,
consumer groups per role, at-least-once delivery) and a feed reading ticks from a topic.

Needs aiokafka (``pip install 'tradeloom[redpanda]'``). See ``docs/redpanda.md``.
"""
