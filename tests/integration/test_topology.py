"""definitions.json and the topology every service declares at start-up are the same."""

from __future__ import annotations

import asyncio
import json
import uuid
from pathlib import Path

from shared.config import Settings
from shared.messaging import Broker, topology
from tests.conftest import AMQP_URL, rabbitmqctl

DEFINITIONS = Path(__file__).parents[2] / "infrastructure" / "rabbitmq" / "definitions.json"


def _listed(what: str, vhost: str, *columns: str) -> list[dict]:
    out = rabbitmqctl(what, "-p", vhost, *columns, "--formatter", "json", "-q")
    return json.loads(out)


def _arguments(table: list) -> dict:
    return {name: value for name, _type, value in table}


def broker_state(vhost: str) -> dict:
    """What the broker holds, in the shape of a definitions file (built-in exchanges left out)."""
    exchanges = [
        {"name": e["name"], "type": e["type"], "durable": e["durable"],
         "auto_delete": e["auto_delete"], "internal": e["internal"],
         "arguments": _arguments(e["arguments"])}
        for e in _listed("list_exchanges", vhost, "name", "type", "durable", "auto_delete",
                         "internal", "arguments")
        if e["name"] and not e["name"].startswith("amq.")
    ]
    queues = [
        {"name": q["name"], "durable": q["durable"], "auto_delete": q["auto_delete"],
         "arguments": _arguments(q["arguments"])}
        for q in _listed("list_queues", vhost, "name", "durable", "auto_delete", "arguments")
    ]
    bindings = [
        {"source": b["source_name"], "destination": b["destination_name"],
         "destination_type": b["destination_kind"], "routing_key": b["routing_key"],
         "arguments": _arguments(b["arguments"])}
        for b in _listed("list_bindings", vhost, "source_name", "destination_name",
                         "destination_kind", "routing_key", "arguments")
        if b["source_name"]  # the default exchange's implicit bindings
    ]
    return {"exchanges": exchanges, "queues": queues, "bindings": bindings}


def _canonical(definitions: dict) -> dict:
    def strip(items: list[dict]) -> list[str]:
        return sorted(json.dumps({k: v for k, v in i.items() if k != "vhost"}, sort_keys=True)
                      for i in items)

    return {key: strip(definitions[key]) for key in ("exchanges", "queues", "bindings")}


def test_definitions_file_is_generated_from_the_topology():
    assert DEFINITIONS.read_text() == topology.render_definitions("/trading"), (
        "regenerate: python -m shared.messaging.topology > infrastructure/rabbitmq/definitions.json"
    )


async def test_topology_declared_at_start_up_equals_definitions_json():
    vhost = f"/p95test-topology-{uuid.uuid4().hex[:8]}"  # bare: nothing declared in it yet
    await asyncio.to_thread(rabbitmqctl, "add_vhost", vhost)
    try:
        await asyncio.to_thread(rabbitmqctl, "set_permissions", "-p", vhost, "guest", ".*", ".*",
                                ".*")
        assert await asyncio.to_thread(broker_state, vhost) == {
            "exchanges": [], "queues": [], "bindings": []}
        broker = Broker(Settings(_env_file=None, amqp_url=AMQP_URL, amqp_vhost=vhost), "test")
        await broker.connect()  # what every service does at start-up
        await broker.close()

        declared = await asyncio.to_thread(broker_state, vhost)
    finally:
        await asyncio.to_thread(rabbitmqctl, "delete_vhost", vhost)
    assert _canonical(declared) == _canonical(json.loads(DEFINITIONS.read_text()))


def test_every_work_queue_is_a_quorum_queue_with_a_dlq():
    for queue in topology.WORK_QUEUES:
        assert queue.arguments["x-queue-type"] == "quorum"
        assert queue.arguments["x-delivery-limit"] == 5
        assert queue.arguments["x-dead-letter-exchange"] == "phoenix95.dlx"
        dlq = next(q for q in topology.QUEUES if q.name == queue.name + ".dlq")
        assert dlq.bindings == (("phoenix95.dlx", queue.name),)
    single = [q.name for q in topology.QUEUES if q.arguments.get("x-single-active-consumer")]
    assert single == ["signal_processing"]
