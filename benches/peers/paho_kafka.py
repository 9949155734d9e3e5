#!/usr/bin/env python3
"""Hand-written MQTT -> Kafka bridge: the "peer" mqbridge is benchmarked against.

This is the bridge a user would write by hand with the two usual Python
clients: paho-mqtt 2.x (MQTT v5) on one side and confluent-kafka (librdkafka)
on the other.  It joins a shared subscription ``$share/<group>/<filter>`` at
QoS 1 and produces every message to one Kafka topic, keyed by the MQTT topic.

Delivery guarantee: **at-least-once**.  The MQTT PUBACK for a message is sent
only after Kafka has acknowledged the record (``acks=all``, idempotent
producer).  A message whose Kafka delivery fails, or that arrives while the
bridge is shutting down, is never acknowledged, so the broker keeps it in the
persistent session (clean_start=False, session expiry 3600 s) and redelivers
it on the next connection.  Such a redelivery can produce a duplicate record
in Kafka; nothing is ever acknowledged before it is durable in Kafka.

Threads:

* paho's network thread (``loop_start``) reads PUBLISH packets and calls
  ``producer.produce()`` from ``on_message``;
* a poll thread loops ``producer.poll(0.1)``, which is where librdkafka's
  delivery callbacks run; they call ``client.ack()`` (see ``_ack`` for why that
  is safe from this thread);
* the main thread only waits for SIGTERM/SIGINT and then drives the shutdown.

Prints ``subscribed`` on stdout once the SUBACK arrives, and a final line with
counts on stderr when it exits.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time

import paho.mqtt.client as mqtt
from confluent_kafka import KafkaError, Producer
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties


def log(msg: str) -> None:
    print(f"paho_kafka: {msg}", file=sys.stderr, flush=True)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--mqtt-host", required=True)
    p.add_argument("--mqtt-port", required=True, type=int)
    p.add_argument("--filter", required=True, help="MQTT topic filter, e.g. bench/#")
    p.add_argument("--share-group", required=True)
    p.add_argument("--client-id", required=True)
    p.add_argument("--receive-maximum", type=int, default=256,
                   help="MQTT v5 Receive Maximum: QoS 1 messages in flight to us (default 256)")
    p.add_argument("--bootstrap", required=True, help="Kafka bootstrap servers")
    p.add_argument("--topic", required=True, help="Kafka topic")
    p.add_argument("--linger-ms", type=int, default=5)
    args = p.parse_args(argv)
    if not 1 <= args.receive_maximum <= 65535:
        p.error("--receive-maximum must be in 1..65535")
    return args


class Bridge:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.stopping = threading.Event()   # set by SIGTERM/SIGINT or a fatal error
        self.exit_code = 0
        self._subscribed_once = False
        self._disconnected = threading.Event()

        # Counters.  `received` is only touched by paho's network thread; the
        # others by whichever thread runs a delivery callback (poll thread, the
        # network thread in the BufferError path, the main thread in flush()),
        # so they are updated under _lock.
        self.received = 0        # QoS 1 PUBLISHes handed to produce()
        self.skipped = 0         # arrived after shutdown began: not produced, not acked
        self.delivered = 0       # Kafka confirmed
        self.failed = 0          # Kafka delivery failed: not acked, broker redelivers
        self.acked = 0           # PUBACK queued to the broker
        self.stale = 0           # delivered, but its connection is gone: not acked

        # Connection generation: bumped (under _lock) whenever paho's
        # connection goes away or comes up.  A message remembers the
        # generation it arrived on and is acked only if it is still current;
        # see _ack().
        self._lock = threading.Lock()
        self._gen = 0

        self.producer = Producer({
            "bootstrap.servers": args.bootstrap,
            "client.id": args.client_id,
            "acks": "all",
            "enable.idempotence": True,
            "linger.ms": args.linger_ms,
            "compression.type": "none",
            "error_cb": self._on_kafka_error,
        })

        self.client = mqtt.Client(
            callback_api_version=mqtt.CallbackAPIVersion.VERSION2,
            client_id=args.client_id,
            protocol=mqtt.MQTTv5,
            manual_ack=True,
        )
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.reconnect_delay_set(min_delay=1, max_delay=10)

        self._poll_stop = threading.Event()
        self._poll_thread = threading.Thread(target=self._poll_loop, name="kafka-poll", daemon=True)

    # ---- MQTT side (paho network thread) ---------------------------------

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log(f"MQTT connect refused: {reason_code}")
            return
        with self._lock:
            self._gen += 1
        # Subscribe on every (re)connect: harmless if the session kept it.
        client.subscribe(f"$share/{self.args.share_group}/{self.args.filter}", qos=1)

    def _on_connect_fail(self, client, userdata) -> None:
        log(f"cannot reach MQTT broker {self.args.mqtt_host}:{self.args.mqtt_port}; retrying")

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        with self._lock:
            self._gen += 1
        self._disconnected.set()
        if not self.stopping.is_set():
            log(f"MQTT disconnected ({reason_code}); reconnecting")

    def _on_subscribe(self, client, userdata, mid, reason_code_list, properties) -> None:
        bad = [rc for rc in reason_code_list if rc.is_failure]
        if bad:
            log(f"subscribe refused: {bad}")
            self.exit_code = 1
            self.stopping.set()
            return
        if not self._subscribed_once:
            self._subscribed_once = True
            print("subscribed", flush=True)

    def _on_message(self, client, userdata, msg: mqtt.MQTTMessage) -> None:
        if self.stopping.is_set():
            # Shutting down: leave it unacked; the broker redelivers it.
            self.skipped += 1
            return
        mid, qos, gen = msg.mid, msg.qos, self._gen
        self.received += 1

        def on_delivery(err, _record) -> None:
            if err is not None:
                with self._lock:
                    self.failed += 1
                log(f"Kafka delivery failed (mid {mid}), not acking: {err}")
                return
            self._ack(mid, qos, gen)

        value, key = msg.payload, msg.topic.encode()
        while True:
            try:
                self.producer.produce(self.args.topic, value=value, key=key, on_delivery=on_delivery)
                return
            except BufferError:
                # Local queue full: serve delivery reports and retry; never drop.
                self.producer.poll(0.05)

    # ---- Kafka side --------------------------------------------------------

    def _poll_loop(self) -> None:
        # poll() returns as soon as a delivery report is ready and sleeps in
        # librdkafka (GIL released) otherwise: low latency, no idle spin.
        while not self._poll_stop.is_set():
            self.producer.poll(0.1)

    def _ack(self, mid: int, qos: int, gen: int) -> None:
        """Send the PUBACK for a message Kafka has confirmed.

        Runs in whichever thread serves the delivery report (normally the poll
        thread), not paho's network thread.  That is safe in paho 2.x
        *because the network loop runs via loop_start()*:

        ``Client.ack()`` -> ``_send_puback()`` -> ``_packet_queue()``, which
        appends the packet to ``_out_packet`` (a ``collections.deque``, whose
        append is atomic) and writes a byte to the socketpair that wakes the
        network thread's select(); the network thread alone then writes it to
        the socket.  paho takes no lock there; it relies on this.  With
        ``loop_forever()`` on the main thread instead, ``_thread`` is None and
        ``_packet_queue()`` calls ``loop_write()`` itself from *our* thread,
        racing the network thread on the socket and on partly written packets:
        that would not be safe, which is why this bridge uses loop_start().

        MQTT packet ids are per connection.  After a reconnect the broker
        resends unacked messages (same ids, DUP set) and then reuses freed ids
        for new messages, so acking a previous connection's id on the new one
        could ack a different, not yet durable message.  Hence the generation
        check, under the same lock that _on_disconnect/_on_connect take to bump
        it: an ack queued before the bump is discarded by paho's reconnect()
        (it clears _out_packet) or dies with the old socket; after the bump it
        is not queued at all, and the broker's redelivery is acked instead.
        (No deadlock: paho calls on_disconnect holding only its
        _in_callback_mutex, which _packet_queue() does not take under
        loop_start.)
        """
        with self._lock:
            self.delivered += 1
            if gen != self._gen:
                self.stale += 1
                return
            rc = self.client.ack(mid, qos)
            if rc == mqtt.MQTT_ERR_SUCCESS:
                self.acked += 1
            else:
                log(f"ack(mid {mid}) failed: {mqtt.error_string(rc)}")

    def _on_kafka_error(self, err: KafkaError) -> None:
        log(f"Kafka error: {err}")
        if err.fatal():
            self.exit_code = 1
            self.stopping.set()

    # ---- lifecycle (main thread) ------------------------------------------

    def run(self) -> int:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 3600
        props.ReceiveMaximum = self.args.receive_maximum
        self.client.connect_async(self.args.mqtt_host, self.args.mqtt_port, keepalive=30,
                                  clean_start=False, properties=props)
        self._poll_thread.start()
        self.client.loop_start()   # network thread; retries the first connect too

        # Event.wait() is interrupted by signals, so the handler runs promptly.
        while not self.stopping.wait(1.0):
            pass
        return self.shutdown()

    def shutdown(self) -> int:
        t0 = time.monotonic()
        # 1. stopping is set: on_message no longer produces or acks.
        # 2. Drain Kafka; delivery callbacks (and so acks) fire during flush().
        left = self.producer.flush(10)
        self._poll_stop.set()
        self._poll_thread.join()
        self.producer.poll(0)   # serve any report that raced the poll thread's exit
        if left:
            log(f"{left} record(s) still unconfirmed by Kafka after 10 s; not acked")
        # 3. DISCONNECT is queued behind every PUBACK already queued, and the
        #    network thread writes _out_packet in order: the acks go out first.
        #    If the connection is down there is nothing to send: disconnect()
        #    just ends paho's reconnect loop.
        connected = self.client.is_connected()
        self._disconnected.clear()   # it may be set by an earlier connection loss
        self.client.disconnect()
        if connected and not self._disconnected.wait(5):
            log("no clean MQTT disconnect within 5 s")
        self.client.loop_stop()
        log(f"received={self.received} delivered={self.delivered} acked={self.acked} "
            f"failed={self.failed} stale={self.stale} skipped={self.skipped} "
            f"unflushed={left} shutdown_s={time.monotonic() - t0:.2f}")
        return self.exit_code


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    bridge = Bridge(args)

    def on_signal(signum, _frame) -> None:
        if bridge.stopping.is_set():
            log(f"second {signal.Signals(signum).name}: exiting without draining")
            os._exit(1)
        bridge.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    return bridge.run()


if __name__ == "__main__":
    sys.exit(main())
