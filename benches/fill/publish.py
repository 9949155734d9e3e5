# Publishes N messages of SIZE bytes at QoS 1 to fill/{i % 16}, 200 in flight; used by benches/fill/run.
import sys, time, threading
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
port, n, size = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="filler", protocol=mqtt.MQTTv5)
c.max_inflight_messages_set(200)
c.max_queued_messages_set(1000)
acked = 0
lock = threading.Lock()
def on_publish(client, userdata, mid, rc, props):
    global acked
    with lock:
        acked += 1
c.on_publish = on_publish
c.connect("127.0.0.1", port)
c.loop_start()
payload = b"x" * size
t = time.time()
for i in range(n):
    while True:
        r = c.publish(f"fill/{i % 16}", payload, qos=1)
        if r.rc == mqtt.MQTT_ERR_SUCCESS:
            break
        time.sleep(0.001)
while acked < n:
    time.sleep(0.05)
print(f"published {n} x {size} B in {time.time()-t:.1f}s")
c.loop_stop()
