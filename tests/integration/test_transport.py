"""The worker's producer (model_service/transport.py) against the real broker: messages sent
as record batches arrive all, in order, with their keys."""

from __future__ import annotations

import asyncio

import pytest
from kafka import TopicPartition

from lammps_stream.broker import make_consumer
from lammps_stream.config import Config
from lammps_stream.schemas import new_id
from model_service import transport
from model_service.app import create_app


def read_partition(config: Config, topic: str, partition: int, wanted: int) -> list:
    consumer = make_consumer(config)
    try:
        tp = TopicPartition(topic, partition)
        consumer.assign([tp])
        consumer.seek_to_beginning(tp)
        found: list = []
        for _ in range(60):
            for batch in consumer.poll(timeout_ms=500).values():
                found += batch
            if len(found) >= wanted:
                break
        return found
    finally:
        consumer.close()


@pytest.mark.parametrize("count", [transport.MIN_BATCH_MESSAGES - 1, 3000])
def test_send_many_delivers_every_message_in_order(stack, count: int) -> None:
    topic = f"send-many-{count}-{new_id()[:8]}"
    # ~1.5 MB for 3,000: more than one record batch of the worker's producer
    messages = [(f"k{i}".encode(), f"{i:06d}".encode() + b"x" * 500) for i in range(count)]

    async def send() -> int:
        app = create_app(stack)
        producer = app.producer
        assert isinstance(producer, transport.Producer)
        await producer.start()
        try:
            await producer.create_topic(topic, partitions=1, replication=1)
            deliveries = await producer.send_many(topic, 0, messages)
            await asyncio.gather(*(delivery for delivery, _ in deliveries))
            assert sum(n for _, n in deliveries) == count  # each message in one delivery
            return len(deliveries)
        finally:
            await producer.stop()

    deliveries = asyncio.run(send())
    if count < transport.MIN_BATCH_MESSAGES:
        assert deliveries == count  # one by one
    else:
        assert 1 < deliveries < count / 100  # a few record batches, not a future per message
    found = read_partition(stack, topic, 0, count)
    assert [(m.key, m.value) for m in found] == messages
