"""Notifications end to end: Vela publishes, an unchanged oslo.messaging consumer reads.

Started by e2e/notifications.sh with a private RabbitMQ node. It:
  1. starts an oslo.messaging notification listener (threading executor) on the `glance`
     exchange, topic `notifications`, as Ceilometer or Searchlight would;
  2. starts Vela (noauth, SQLite) with driver = "messagingv2" and drives a scripted sequence
     of API calls: image create, update, tag, upload, download, members, deactivation, a
     glance-direct import, delete;
  3. stops the broker (rabbitmqctl stop_app), makes more changes (the API must not slow down
     or fail), kills Vela with SIGKILL while the outbox holds them, restarts Vela, starts
     the broker again;
  4. checks that every expected event arrived, in order per image, with Glance's payload
     fields, with duplicates only of the same message (at-least-once);
  5. restarts Vela with disabled_notifications and checks that those are not sent.

Prints "ok - ..." / "not ok - ..." lines and exits non-zero on any failure.
"""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import oslo_messaging as om
import requests
from oslo_config import cfg
from prometheus_client.parser import text_string_to_metric_families

VELA = os.environ["VELA_BIN"]
WORK = os.environ["WORK"]
AMQP_PORT = int(os.environ["AMQP_PORT"])
NODE = os.environ["RABBIT_NODE"]
CTL = os.environ.get("RABBITMQCTL", "/usr/lib/rabbitmq/bin/rabbitmqctl")
URL = f"rabbit://guest:guest@127.0.0.1:{AMQP_PORT}/"

ADMIN = {"X-Roles": "admin,member,reader", "X-Project-Id": "p-owner", "X-User-Id": "u-owner"}
OTHER = {"X-Roles": "member,reader", "X-Project-Id": "p-other", "X-User-Id": "u-other"}

IMAGE_KEYS = {
    "id", "name", "status", "created_at", "updated_at", "min_disk", "min_ram", "protected",
    "checksum", "owner", "disk_format", "container_format", "size", "virtual_size",
    "is_public", "visibility", "properties", "tags", "deleted", "deleted_at",
}
UPLOAD_KEYS = IMAGE_KEYS | {"os_glance_importing_to_stores", "os_glance_failed_import"}
MEMBER_KEYS = {"image_id", "member_id", "status", "created_at", "updated_at", "deleted",
               "deleted_at"}
TASK_KEYS = {"id", "type", "status", "result", "owner", "message", "expires_at",
             "created_at", "updated_at", "deleted", "deleted_at"}
SEND_KEYS = {"bytes_sent", "image_id", "owner_id", "receiver_tenant_id", "receiver_user_id"}

failures = 0


def report(ok, what, detail=""):
    global failures
    if ok:
        print(f"ok - {what}", flush=True)
    else:
        failures += 1
        print(f"not ok - {what}: {detail}", flush=True)


# ---------------------------------------------------------------- the consumer
received = []
lock = threading.Lock()


class Endpoint:
    def _record(self, priority, publisher_id, event_type, payload, metadata):
        with lock:
            received.append({
                "priority": priority, "publisher_id": publisher_id,
                "event_type": event_type, "payload": payload,
                "message_id": metadata.get("message_id"),
                "timestamp": metadata.get("timestamp"),
            })
        return om.NotificationResult.HANDLED

    def info(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._record("INFO", publisher_id, event_type, payload, metadata)

    def error(self, ctxt, publisher_id, event_type, payload, metadata):
        return self._record("ERROR", publisher_id, event_type, payload, metadata)


def start_listener():
    conf = cfg.ConfigOpts()
    conf([], project="vela-notify-check")
    transport = om.get_notification_transport(conf, url=URL)
    listener = om.get_notification_listener(
        transport, [om.Target(topic="notifications", exchange="glance")], [Endpoint()],
        executor="threading")
    listener.start()
    return listener


# ---------------------------------------------------------------- Vela
def write_config(extra=""):
    with open(f"{WORK}/vela.toml", "w") as f:
        f.write(f"""
[auth]
mode = "noauth"

[images]
enabled_import_methods = ["glance-direct"]

[metrics]
bind = "127.0.0.1:0"

[notifications]
driver = "messagingv2"
transport_url = "{URL}"
publisher_id = "image.vela-e2e"
{extra}
""")


class Vela:
    def __init__(self):
        self.log = open(f"{WORK}/vela.log", "a")
        self.proc = subprocess.Popen(
            [VELA, "--config", f"{WORK}/vela.toml", "serve", "--bind", "127.0.0.1:0",
             "--data-dir", f"{WORK}/data"],
            stdout=subprocess.PIPE, stderr=self.log, text=True)
        deadline = time.time() + 30
        self.url = None
        self.metrics = None
        while time.time() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            if line.startswith("vela metrics on "):
                self.metrics = line.split("metrics on ", 1)[1].strip()
            if "listening on " in line:
                self.url = line.split("listening on ", 1)[1].strip()
                break
        if not self.url:
            raise SystemExit("vela did not start; see " + f"{WORK}/vela.log")
        threading.Thread(target=self.proc.stdout.read, daemon=True).start()

    def call(self, method, path, headers=ADMIN, expect=None, **kw):
        h = dict(headers)
        h.update(kw.pop("extra_headers", {}))
        r = requests.request(method, self.url + path, headers=h, timeout=30, **kw)
        if expect is not None and r.status_code != expect:
            raise SystemExit(f"{method} {path}: {r.status_code} {r.text[:300]}")
        return r

    def scrape(self):
        """The metrics, parsed by the Prometheus project's text-format parser."""
        text = requests.get(self.metrics + "/metrics", timeout=10).text
        out = {}
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                out[(s.name, tuple(sorted(s.labels.items())))] = s.value
        return out

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(15)
        except subprocess.TimeoutExpired:
            self.kill9()


def rabbit(action):
    subprocess.run([CTL, "-n", NODE, action], check=True, capture_output=True, timeout=120)


def outbox_depth():
    db = sqlite3.connect(f"file:{WORK}/data/vela.sqlite?mode=ro", uri=True, timeout=10)
    try:
        return db.execute("SELECT COUNT(*) FROM notification_outbox").fetchone()[0]
    finally:
        db.close()


def create(vela, name, **fields):
    body = {"name": name, "disk_format": "raw", "container_format": "bare", **fields}
    return vela.call("POST", "/v2/images", json=body, expect=201).json()["id"]


def patch(vela, image, ops, expect=200):
    return vela.call("PATCH", f"/v2/images/{image}", json=ops, expect=expect, extra_headers={
        "Content-Type": "application/openstack-images-v2.1-json-patch"})


def upload(vela, image, data):
    vela.call("PUT", f"/v2/images/{image}/file", data=data, expect=204,
              extra_headers={"Content-Type": "application/octet-stream"})


def wait_for(pred, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if pred():
            return True
        time.sleep(0.2)
    return pred()


def events_of(key):
    """Event types, in arrival order, of the messages about `key` (an image or task id)."""
    with lock:
        out = []
        for m in received:
            p = m["payload"]
            if isinstance(p, dict) and key in (p.get("id"), p.get("image_id")):
                out.append(m)
        return out


def main():
    listener = start_listener()
    write_config()
    vela = Vela()
    data = os.urandom(1024 * 1024 + 7)

    # ------------------------------------------------ phase 1: broker up
    a = create(vela, "notify-a", visibility="shared")
    patch(vela, a, [{"op": "replace", "path": "/name", "value": "notify-a2"}])
    vela.call("PUT", f"/v2/images/{a}/tags/t1", expect=204)
    upload(vela, a, data)
    got = vela.call("GET", f"/v2/images/{a}/file", headers=OTHER | {"X-Roles": "admin"},
                    expect=200).content
    assert got == data
    vela.call("POST", f"/v2/images/{a}/members", json={"member": "p-other"}, expect=200)
    vela.call("PUT", f"/v2/images/{a}/members/p-other", headers=OTHER,
              json={"status": "accepted"}, expect=200)
    vela.call("DELETE", f"/v2/images/{a}/members/p-other", expect=204)
    vela.call("POST", f"/v2/images/{a}/actions/deactivate", expect=204)
    vela.call("POST", f"/v2/images/{a}/actions/reactivate", expect=204)

    g = create(vela, "notify-import")
    vela.call("PUT", f"/v2/images/{g}/stage", data=data, expect=204,
              extra_headers={"Content-Type": "application/octet-stream"})
    vela.call("POST", f"/v2/images/{g}/import", json={"method": {"name": "glance-direct"}},
              expect=202)
    imported = wait_for(
        lambda: vela.call("GET", f"/v2/images/{g}").json()["status"] == "active", 60)
    report(imported, "glance-direct import finished")
    tasks = vela.call("GET", f"/v2/images/{g}/tasks").json()["tasks"]
    task_id = tasks[0]["id"] if tasks else None
    vela.call("DELETE", f"/v2/images/{a}", expect=204)

    expected_a = ["image.create", "image.update", "image.update", "image.prepare",
                  "image.upload", "image.activate", "image.send", "image.member.create",
                  "image.member.update", "image.member.delete", "image.update",
                  "image.update", "image.delete"]
    wait_for(lambda: len(events_of(a)) >= len(expected_a), 30)
    seq_a = [m["event_type"] for m in events_of(a)]
    report(seq_a == expected_a, "the image life cycle's events arrive in order",
           f"got {seq_a}")
    # Staging saves the image (uploading), the import call saves it again (its task and
    # stores), then the data goes in.
    expected_g = ["image.create", "image.update", "image.update", "image.prepare",
                  "image.upload", "image.activate"]
    wait_for(lambda: len(events_of(g)) >= len(expected_g), 30)
    seq_g = [m["event_type"] for m in events_of(g)]
    report(seq_g == expected_g, "an import's image events arrive in order", f"got {seq_g}")
    if task_id:
        expected_t = ["task.create", "task.run", "task.processing", "task.success"]
        wait_for(lambda: len(events_of(task_id)) >= len(expected_t), 30)
        seq_t = [m["event_type"] for m in events_of(task_id)]
        report(seq_t == expected_t, "the import task's events arrive in order", f"got {seq_t}")
    else:
        report(False, "the import left a task", "GET /v2/images/{id}/tasks is empty")

    # Payloads: Glance's fields, no locations, publisher and priority.
    for m in events_of(a) + events_of(g) + (events_of(task_id) if task_id else []):
        et, p = m["event_type"], m["payload"]
        keys = set(p)
        want = (UPLOAD_KEYS if et in ("image.prepare", "image.upload") else
                SEND_KEYS if et == "image.send" else
                MEMBER_KEYS if et.startswith("image.member.") else
                TASK_KEYS if et.startswith("task.") else IMAGE_KEYS)
        if keys != want:
            report(False, f"{et} payload fields", f"extra {keys - want}, missing {want - keys}")
            break
    else:
        report(True, "every payload has Glance's fields (and no locations)")
    sends = [m for m in events_of(a) if m["event_type"] == "image.send"]
    report(bool(sends) and sends[0]["payload"]["bytes_sent"] == len(data)
           and sends[0]["payload"]["receiver_tenant_id"] == "p-other"
           and sends[0]["priority"] == "INFO",
           "image.send reports the bytes and the receiver", str(sends[:1]))
    dele = [m for m in events_of(a) if m["event_type"] == "image.delete"]
    report(bool(dele) and dele[0]["payload"]["deleted"] is True
           and dele[0]["payload"]["deleted_at"], "image.delete is marked deleted")
    report(all(m["publisher_id"] == "image.vela-e2e" for m in received),
           "publisher_id is the configured one")
    upd = [m for m in events_of(a) if m["event_type"] == "image.update"]
    report(bool(upd) and upd[0]["payload"]["name"] == "notify-a2"
           and upd[1]["payload"]["tags"] == ["t1"], "image.update carries the change")

    # ------------------------------------------------ phase 2: broker down, then kill -9
    rabbit("stop_app")
    t0 = time.time()
    c = create(vela, "notify-c")
    upload(vela, c, data)
    patch(vela, c, [{"op": "add", "path": "/color", "value": "blue"}])
    vela.call("DELETE", f"/v2/images/{g}", expect=204)
    took = time.time() - t0
    report(took < 10, "with the broker stopped the API answers at once",
           f"4 calls took {took:.1f} s")
    depth = outbox_depth()
    report(depth >= 6, "the outbox holds the changes made while the broker is away",
           f"depth {depth}")
    m = vela.scrape()
    report(m.get(("vela_notification_outbox_depth", ())) == depth,
           "vela_notification_outbox_depth shows the backlog", str(m.get(("vela_notification_outbox_depth", ()))))
    health = requests.get(vela.metrics + "/healthcheck", timeout=10).json()
    report(health["notifications"]["outbox_depth"] == depth and health["status"] == "ok",
           "the detailed health check shows the backlog", str(health))
    time.sleep(1.5)  # the sender has tried and failed at least once
    vela.kill9()
    vela = Vela()
    d = create(vela, "notify-d")
    rabbit("start_app")
    expected_c = ["image.create", "image.prepare", "image.upload", "image.activate",
                  "image.update"]
    ok_c = wait_for(lambda: len(events_of(c)) >= len(expected_c), 90)
    seq_c = [m["event_type"] for m in events_of(c)]
    report(ok_c and seq_c == expected_c,
           "changes made while the broker was down arrive after it returns and a kill -9",
           f"got {seq_c}")
    wait_for(lambda: "image.delete" in [m["event_type"] for m in events_of(g)], 30)
    seq_g2 = [m["event_type"] for m in events_of(g)]
    report(seq_g2 == expected_g + ["image.delete"], "the delete made while down arrives",
           f"got {seq_g2}")
    wait_for(lambda: len(events_of(d)) >= 1, 30)
    report([m["event_type"] for m in events_of(d)] == ["image.create"],
           "a change made after the restart arrives")
    with lock:
        ids = [m["message_id"] for m in received]
        bodies = {}
        dup_differs = False
        for m in received:
            key = m["message_id"]
            body = (m["event_type"], json.dumps(m["payload"], sort_keys=True))
            if key in bodies and bodies[key] != body:
                dup_differs = True
            bodies[key] = body
    report(not dup_differs, "a message sent twice is the same message (same message_id)",
           f"{len(ids) - len(set(ids))} duplicates")
    print(f"# {len(ids)} messages received, {len(ids) - len(set(ids))} duplicates", flush=True)
    report(outbox_depth() == 0, "the outbox is empty at the end")
    m = vela.scrape()
    report(m.get(("vela_notification_outbox_depth", ())) == 0
           and m.get(("vela_http_requests_total", (("method", "POST"), ("route", "/v2/images"),
                                                   ("status", "201")))) == 1.0,
           "the metrics after the restart: empty outbox, one create", "")

    # ------------------------------------------------ disabled_notifications
    vela.stop()
    write_config('disabled_notifications = ["image.update", "image.member"]')
    vela = Vela()
    patch(vela, d, [{"op": "add", "path": "/color", "value": "red"}])
    vela.call("POST", f"/v2/images/{d}/members", json={"member": "p-other"}, expect=200)
    vela.call("DELETE", f"/v2/images/{d}", expect=204)
    wait_for(lambda: len(events_of(d)) >= 2, 30)
    time.sleep(1)
    seq_d = [m["event_type"] for m in events_of(d)]
    report(seq_d == ["image.create", "image.delete"],
           "disabled_notifications: image.update and image.member.* are not sent, image.delete is",
           f"got {seq_d}")
    vela.stop()
    listener.stop()
    listener.wait()
    print(f"{failures} failed", flush=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
