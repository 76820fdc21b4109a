"""``gc-inproc://``: oslo.messaging between threads of one process, without polling.

oslo.messaging's ``fake://`` driver passes messages in memory, but its
listener looks at its queues every 50 ms, so a cast in the all-in-one (API
and compute service in one process) waits 25 ms on average before the
compute manager sees it. This driver is that one with a condition variable:
delivering a message wakes the listeners at once. Everything else (queues,
topics, fanout, replies to calls, JSON-serialisability checks) is the fake
driver's own.

Like ``fake://``, every transport of the process shares one bus, so a client
and a server made from two transports of the same URL reach each other. The
condition is made when the first transport is, not at import: should a
process monkey-patch with eventlet before it sets up messaging (nothing here
does), the condition and the listener's thread are then of the same kind.
"""

import threading
import time
from typing import Any

import oslo_messaging
from oslo_messaging._drivers import base, impl_fake

#: Wakes every listener of the process when a message is delivered or a listener
#: stops; its lock is also every in-process queue's lock (made by _bus()).
_delivered: threading.Condition | None = None
_delivered_lock = threading.Lock()


def _bus() -> threading.Condition:
    global _delivered
    with _delivered_lock:
        if _delivered is None:
            _delivered = threading.Condition(threading.RLock())
        return _delivered


class _Exchange(impl_fake.FakeExchange):
    def __init__(self, name: str, delivered: threading.Condition) -> None:
        super().__init__(name)
        # The fake exchange guards its queues with this lock; one condition
        # over all of them lets a listener wait for any of its targets.
        self._queues_lock = delivered

    def deliver_message(self, *args: Any, **kwargs: Any) -> None:
        with self._queues_lock:
            super().deliver_message(*args, **kwargs)
            self._queues_lock.notify_all()


class _ExchangeManager(impl_fake.FakeExchangeManager):
    # Its own registry: the fake driver's is a class attribute too, and the two
    # kinds of exchange must not be handed to each other's listeners.
    _exchanges_lock = threading.Lock()
    _exchanges: dict[str, _Exchange] = {}

    def __init__(self, default_exchange: str | None) -> None:
        super().__init__(default_exchange)
        self.delivered = _bus()

    def get_exchange(self, name: str | None) -> _Exchange:
        if name is None:
            name = self._default_exchange
        with self._exchanges_lock:
            exchange = self._exchanges.get(name)
            if exchange is None:
                exchange = self._exchanges[name] = _Exchange(name, self.delivered)
            return exchange

    @classmethod
    def cleanup(cls) -> None:
        with cls._exchanges_lock:
            cls._exchanges.clear()


class _Listener(impl_fake.FakeListener):
    @base.batch_poll_helper  # type: ignore[misc]
    def poll(self, timeout: float | None = None) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        delivered = self._exchange_manager.delivered
        with delivered:
            while not self._stopped.is_set():
                for target in self._targets:
                    exchange = self._exchange_manager.get_exchange(target.exchange)
                    ctxt, message, reply_q, requeue = exchange.poll(target, self._pool)
                    if message is not None:
                        return impl_fake.FakeIncomingMessage(ctxt, message, reply_q, requeue)
                if deadline is None:
                    delivered.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                delivered.wait(left)
        return None

    def stop(self) -> None:
        super().stop()
        with self._exchange_manager.delivered:
            self._exchange_manager.delivered.notify_all()


class InprocDriver(impl_fake.FakeDriver):
    """The fake driver whose listeners wake on delivery (scheme ``gc-inproc``)."""

    def __init__(self, conf: Any, url: Any, default_exchange: str | None = None,
                 allowed_remote_exmods: list[str] | None = None) -> None:
        super().__init__(conf, url, default_exchange, allowed_remote_exmods)
        self._exchange_manager = _ExchangeManager(default_exchange)

    def listen(self, target: oslo_messaging.Target, batch_size: int,
               batch_timeout: float | None) -> base.PollStyleListenerAdapter:
        exchange = target.exchange or self._default_exchange
        listener = _Listener(self._exchange_manager, [
            oslo_messaging.Target(topic=target.topic, server=target.server,
                                  exchange=exchange),
            oslo_messaging.Target(topic=target.topic, exchange=exchange)])
        return base.PollStyleListenerAdapter(listener, batch_size, batch_timeout)

    def listen_for_notifications(self, targets_and_priorities: list[Any], pool: str | None,
                                 batch_size: int, batch_timeout: float | None
                                 ) -> base.PollStyleListenerAdapter:
        targets = [oslo_messaging.Target(topic='%s.%s' % (target.topic, priority),
                                         exchange=target.exchange)
                   for target, priority in targets_and_priorities]
        listener = _Listener(self._exchange_manager, targets, pool)
        return base.PollStyleListenerAdapter(listener, batch_size, batch_timeout)

    def cleanup(self) -> None:
        # Older oslo.messaging's fake driver forgets nothing at cleanup.
        self._exchange_manager.cleanup()
