#!/usr/bin/python3
"""Read your writes with walcast, in Python (python3-redis, python3-psycopg2).

A command commits on the write database and returns a consistency token: pg_current_wal_insert_lsn()
taken in the same session right after COMMIT (at or past the commit's end, whatever synchronous_commit
says). A read that must see the write first waits until the projection it reads has applied through the
token, then reads:

  - a service that talks only to Redis: SUBSCRIBE walcast:applied:<slot>, then HGET walcast:applied:<slot>
    <sink>, compare LSNs, and wait for a message "<sink> <lsn>" that reaches the token;
  - a service that talks only to the read PostgreSQL: LISTEN walcast_applied, then read walcast_cursor.lsn
    for (slot, sink), and wait for a notification "<slot> <sink> <lsn>" that reaches the token;
  - or walcast's endpoint: GET /wait?lsn=<token>&sink=<sink>&timeout_ms=N (200 applied, 408 timed out);
    when walcast is not running the endpoint is unreachable: fall back to one of the above, which time out.

Subscribe (or listen) before reading the position, so that an announcement between the two is not missed.
A timeout says walcast is stopped or far behind: show the data as it is, or tell the user to retry.

Usage (the order example's databases): rw.py --write-dsn DSN --read-dsn DSN --redis-url URL --slot SLOT
  [--customer ID] [--timeout-ms N] [--via redis|postgres|http] [--http HOST:PORT]
Prints one JSON line; exit 0 when the order was visible after the wait, 1 when the wait timed out.
"""
import argparse
import json
import select
import sys
import time
import urllib.error
import urllib.request

import psycopg2
import psycopg2.extensions
import redis


def lsn(text):
    """'16/B374D848' -> an integer that compares as the position does."""
    hi, lo = text.split("/")
    return (int(hi, 16) << 32) | int(lo, 16)


def place_order(write_dsn, customer):
    """The command: state and event in one transaction; returns (order id, consistency token)."""
    conn = psycopg2.connect(write_dsn)
    try:
        with conn:  # commits
            with conn.cursor() as cur:
                cur.execute("SELECT shop.place_order(%s, %s)",
                            (customer, json.dumps([{"sku": "RW-1", "qty": 1, "unit_price": 9.99}])))
                order_id = cur.fetchone()[0]
        with conn.cursor() as cur:  # same session, right after COMMIT
            cur.execute("SELECT pg_current_wal_insert_lsn()::text")
            token = cur.fetchone()[0]
        conn.commit()
        return order_id, token
    finally:
        conn.close()


def wait_redis(r, slot, sink, token, timeout_s):
    """Redis only: (reached, applied-through text or None)."""
    channel = f"walcast:applied:{slot}"
    want = lsn(token)
    sub = r.pubsub(ignore_subscribe_messages=True)
    sub.subscribe(channel)  # first: nothing published after this is missed
    try:
        applied = r.hget(channel, sink)
        applied = applied.decode() if applied else None
        deadline = time.monotonic() + timeout_s
        while applied is None or lsn(applied) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, applied
            msg = sub.get_message(timeout=left)
            if msg and msg["type"] == "message":
                name, _, pos = msg["data"].decode().partition(" ")
                if name == sink and (applied is None or lsn(pos) > lsn(applied)):
                    applied = pos
        return True, applied
    finally:
        sub.close()


def wait_postgres(read_dsn, slot, sink, token, timeout_s):
    """Read PostgreSQL only: (reached, applied-through text or None)."""
    conn = psycopg2.connect(read_dsn)
    conn.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
    want = lsn(token)
    try:
        with conn.cursor() as cur:
            cur.execute("LISTEN walcast_applied")  # first
            cur.execute("SELECT lsn::text FROM walcast_cursor WHERE slot = %s AND sink = %s", (slot, sink))
            row = cur.fetchone()
        applied = row[0] if row else None
        deadline = time.monotonic() + timeout_s
        while applied is None or lsn(applied) < want:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, applied
            if select.select([conn], [], [], left)[0]:
                conn.poll()
                for n in conn.notifies:
                    s, k, pos = n.payload.split(" ")
                    if s == slot and k == sink and (applied is None or lsn(pos) > lsn(applied)):
                        applied = pos
                conn.notifies.clear()
        return True, applied
    finally:
        conn.close()


def wait_http(endpoint, sink, token, timeout_s):
    """walcast's endpoint: (reached, applied-through text or None); raises OSError when unreachable."""
    url = f"http://{endpoint}/wait?lsn={token}&sink={sink}&timeout_ms={int(timeout_s * 1000)}"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s + 5) as resp:
            body = json.load(resp)
    except urllib.error.HTTPError as e:
        if e.code != 408:
            raise
        body = json.load(e)
    return body["reached"], body["applied"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--write-dsn", required=True)
    ap.add_argument("--read-dsn", required=True)
    ap.add_argument("--redis-url", required=True)
    ap.add_argument("--slot", required=True)
    ap.add_argument("--customer", type=int, default=1)
    ap.add_argument("--timeout-ms", type=int, default=5000)
    ap.add_argument("--via", choices=["redis", "postgres", "http"], default="redis")
    ap.add_argument("--http", default="127.0.0.1:9187")
    a = ap.parse_args()
    timeout = a.timeout_ms / 1000.0

    order_id, token = place_order(a.write_dsn, a.customer)
    r = redis.Redis.from_url(a.redis_url)
    via = a.via
    if via == "http":
        try:
            reached, applied = wait_http(a.http, "cache", token, timeout)
        except OSError as e:  # walcast not running: its endpoint is unreachable
            print(f"walcast's endpoint is unreachable ({e}); waiting on redis", file=sys.stderr)
            via = "redis"
    if via == "redis":
        reached, applied = wait_redis(r, a.slot, "cache", token, timeout)
    if via == "postgres":
        reached, applied = wait_postgres(a.read_dsn, a.slot, "readdb", token, timeout)

    if via == "postgres":
        conn = psycopg2.connect(a.read_dsn)
        with conn.cursor() as cur:
            cur.execute("SELECT status FROM order_summary WHERE order_id = %s", (order_id,))
            row = cur.fetchone()
        conn.close()
        status = row[0] if row else None
    else:
        status = r.hget(f"order:{order_id}", "status")
        status = status.decode() if status else None
    print(json.dumps({"order_id": order_id, "token": token, "via": via, "reached": reached,
                      "applied": applied, "status": status}))
    return 0 if reached and status == "placed" else 1


if __name__ == "__main__":
    sys.exit(main())
