"""RabbitMQ on aio-pika: confirmed publishing, safe consuming, the topology."""

from shared.messaging.broker import Broker, BrokerUnavailableError
from shared.messaging.consumer import Consumer, TransientError

__all__ = ["Broker", "BrokerUnavailableError", "Consumer", "TransientError"]
