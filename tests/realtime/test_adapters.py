"""``realtime.adapters``: where Herald goes past a library's API, and a pin of every private name
it uses, so that an upgrade that renames one fails here.

Against the real pub/sub layer and a private ``redis-server`` (``tests/conftest.py``). What a
user would notice if these were wrong: a notification that reaches some recipients and not
others, or a socket that acked ``subscribe`` and then hears nothing.
"""

import asyncio
from collections.abc import AsyncIterator

import channels_redis.pubsub
import pytest
from twisted.internet.abstract import FileDescriptor

from realtime import adapters, resilience
from realtime.adapters import PubSubLayer

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def layer(redis_url: str) -> AsyncIterator[PubSubLayer]:
    layer = PubSubLayer(hosts=[{"address": redis_url}], prefix="layer-test")
    yield layer
    await layer.flush()


async def _next(layer: PubSubLayer, channel: str) -> dict:
    return await asyncio.wait_for(layer.receive(channel), 5)


async def test_a_pipelined_fan_out_reaches_every_group_once(layer: PubSubLayer):
    # More events than one pipeline holds, one group each, as a 1200-recipient notification.
    count = adapters.PIPELINE * 2 + 200
    channels = [await layer.new_channel() for _ in range(count)]
    for index, channel in enumerate(channels):
        await layer.group_add(f"user.{index}", channel)

    events = [(f"user.{i}", {"type": "notification.created", "seq": i}) for i in range(count)]
    failures = await layer.group_send_many(events)

    assert failures == 0
    received = await asyncio.gather(*(_next(layer, channel) for channel in channels))
    assert [message["seq"] for message in received] == list(range(count))
    assert all(message["type"] == "notification.created" for message in received)
    # Exactly once: nothing more is queued for any socket.
    assert all(layer._get_layer().channels[channel].empty() for channel in channels)


async def test_a_burst_of_joins_to_one_group_all_receive(layer: PubSubLayer):
    channels = [await layer.new_channel() for _ in range(300)]

    await asyncio.gather(*(resilience.group_add(layer, "room.1", c) for c in channels))
    await layer.group_send("room.1", {"type": "room.message", "id": 1})

    received = await asyncio.gather(*(_next(layer, channel) for channel in channels))
    assert {message["id"] for message in received} == {1}


async def test_a_join_never_completes_while_the_process_is_unsubscribed(
    layer: PubSubLayer,
):
    leaving, first, second = [await layer.new_channel() for _ in range(3)]
    await resilience.group_add(layer, "room.2", leaving)
    loop_layer = layer._get_layer()
    name = loop_layer._get_group_channel_name("room.2")
    shard = loop_layer._get_shard(name)

    # Hold the layer's lock so that the window is wide open: the last local member leaves (its
    # UNSUBSCRIBE queued), then one socket joins (its SUBSCRIBE queued), then another.
    await shard._lock.acquire()
    discard = asyncio.ensure_future(resilience.group_discard(layer, "room.2", leaving))
    await asyncio.sleep(0)
    join_first = asyncio.ensure_future(resilience.group_add(layer, "room.2", first))
    await asyncio.sleep(0)
    join_second = asyncio.ensure_future(resilience.group_add(layer, "room.2", second))
    await asyncio.sleep(0)
    shard._lock.release()

    await discard  # UNSUBSCRIBE sent: until the SUBSCRIBE, nothing reaches this process
    assert name not in shard._subscribed_to
    assert not join_second.done(), "a join returned while nothing could reach it"
    await asyncio.gather(join_first, join_second)
    assert name in shard._subscribed_to

    await layer.group_send("room.2", {"type": "room.message", "id": 7})
    assert (await _next(layer, first))["id"] == 7
    assert (await _next(layer, second))["id"] == 7
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(layer.receive(leaving), 0.3)


async def test_a_publish_with_redis_unreachable_counts_every_event_as_failed():
    layer = PubSubLayer(hosts=[{"address": "redis://127.0.0.1:1/0"}])
    events = [(f"user.{i}", {"type": "notification.created"}) for i in range(3)]

    assert await layer.group_send_many(events) == 3


async def test_a_cancelled_receive_with_redis_down_cleans_up_without_an_error_log(caplog):
    """A socket closing (or a /readyz check giving up) while Redis is unreachable: its receive
    is cancelled, the clean-up's UNSUBSCRIBE fails, and the log says so in one warning line,
    without the ERROR and traceback channels-redis writes."""
    layer = PubSubLayer(hosts=[{"address": "redis://127.0.0.1:1/0"}], prefix="down-test")
    loop_layer = layer._get_layer()
    loop_layer.channels["down-test.c"] = asyncio.Queue()  # a channel whose Redis went away
    loop_layer._get_shard("down-test.c")._subscribed_to.add("down-test.c")
    receiver = asyncio.ensure_future(layer.receive("down-test.c"))
    await asyncio.sleep(0.05)
    receiver.cancel()
    with pytest.raises(asyncio.CancelledError):
        await receiver

    assert "down-test.c" not in loop_layer.channels
    assert [r.levelname for r in caplog.records] == ["WARNING"], caplog.text
    assert caplog.records[0].exc_info is None
    assert "could not unsubscribe" in caplog.records[0].getMessage()


async def test_a_receive_whose_subscribe_failed_leaves_no_queue_behind():
    """With Redis down, a receive's SUBSCRIBE fails; the channel's queue goes with it, so the
    next receive subscribes again. channels-redis kept the queue, and the next receive (the
    next /readyz check, after Redis was back) skipped the SUBSCRIBE and waited on a channel
    nothing reached."""
    down = PubSubLayer(hosts=[{"address": "redis://127.0.0.1:1/0"}], prefix="down-test")
    with pytest.raises(Exception, match="onnect"):
        await down.receive("down-test.again")
    assert "down-test.again" not in down._get_layer().channels


def test_the_private_names_the_adapters_use_still_exist():
    """Each private attribute ``realtime.adapters`` touches, named here once more: an upgrade
    of channels-redis, redis-py or Twisted that drops one fails this test, not production."""
    loop_layer = channels_redis.pubsub.RedisPubSubLoopLayer
    for name in (
        "_get_group_channel_name",
        "_get_shard",
        "_subscribe_to_channel",
        "group_add",
        "group_discard",
    ):
        assert callable(getattr(loop_layer, name)), name
    shard = channels_redis.pubsub.RedisSingleShardConnection({"address": "redis://x"}, None)
    for name in ("_subscribed_to", "_redis", "_pubsub", "_lock"):
        assert hasattr(shard, name), name
    assert callable(shard._ensure_redis)
    assert callable(channels_redis.pubsub.RedisPubSubChannelLayer._get_layer)
    descriptor = FileDescriptor()
    for name in ("dataBuffer", "offset", "_tempDataLen"):
        assert hasattr(descriptor, name), name


async def test_the_loop_layer_has_the_attributes_read_at_run_time(layer: PubSubLayer):
    channel = await layer.new_channel()
    await layer.group_add("pin", channel)
    loop_layer = layer._get_layer()
    assert channel in loop_layer.channels
    assert loop_layer.groups[loop_layer._get_group_channel_name("pin")] == {channel}
    assert isinstance(loop_layer._shards, list)
    connections = layer.subscriber_connections()
    assert len(connections) == 1
    connection, pool = connections[0]
    assert callable(connection.register_connect_callback)
    assert callable(pool.disconnect)
