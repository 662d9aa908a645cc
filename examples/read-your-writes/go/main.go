// Read your writes with walcast, in Go (Debian's golang-github-gomodule-redigo-dev and
// golang-github-lib-pq-dev; build with GO111MODULE=off GOPATH=/usr/share/gocode go build).
//
// The same recipe as ../rw.py: the command returns pg_current_wal_insert_lsn() taken in its own session
// right after COMMIT as a consistency token; a read that must see the write waits until the sink has
// applied through it, subscribing (Redis: SUBSCRIBE walcast:applied:<slot>) or listening (PostgreSQL:
// LISTEN walcast_applied) first, then reading the position (HGET, or walcast_cursor.lsn), then waiting
// for an announcement that reaches the token. A timeout means walcast is stopped or far behind.
//
// Usage: rw -write-dsn DSN -read-dsn DSN -redis-addr HOST:PORT [-redis-db N] -slot SLOT [-customer ID]
//
//	[-timeout-ms N] [-via redis|postgres]
//
// Prints one JSON line; exit 0 when the order was visible after the wait, 1 when the wait timed out.
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/gomodule/redigo/redis"
	"github.com/lib/pq"
)

// lsn turns "16/B374D848" into a number that compares as the position does.
func lsn(text string) uint64 {
	parts := strings.SplitN(text, "/", 2)
	if len(parts) != 2 {
		return 0
	}
	hi, _ := strconv.ParseUint(parts[0], 16, 32)
	lo, _ := strconv.ParseUint(parts[1], 16, 32)
	return hi<<32 | lo
}

// placeOrder runs the command and returns the order's id and the consistency token.
func placeOrder(writeDSN string, customer int64) (int64, string, error) {
	db, err := sql.Open("postgres", writeDSN)
	if err != nil {
		return 0, "", err
	}
	defer db.Close()
	conn, err := db.Conn(ctx)
	if err != nil {
		return 0, "", err
	}
	defer conn.Close()
	var id int64
	// One statement is its own transaction: committed when it returns.
	err = conn.QueryRowContext(ctx, "SELECT shop.place_order($1, $2)", customer,
		`[{"sku": "RW-GO", "qty": 1, "unit_price": 4.20}]`).Scan(&id)
	if err != nil {
		return 0, "", err
	}
	var token string
	// The same session (conn), right after the COMMIT.
	err = conn.QueryRowContext(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&token)
	return id, token, err
}

// waitRedis: Redis only. Returns whether the token was reached and the position applied through.
func waitRedis(addr string, dbn int, slot, sink, token string, timeout time.Duration) (bool, string, error) {
	channel := "walcast:applied:" + slot
	want := lsn(token)
	deadline := time.Now().Add(timeout)
	subConn, err := redis.Dial("tcp", addr, redis.DialDatabase(dbn))
	if err != nil {
		return false, "", err
	}
	defer subConn.Close()
	sub := redis.PubSubConn{Conn: subConn}
	if err := sub.Subscribe(channel); err != nil { // first: nothing published after it is missed
		return false, "", err
	}
	if e, ok := sub.ReceiveWithTimeout(timeout).(error); ok { // the subscription's confirmation
		return false, "", e
	}
	c, err := redis.Dial("tcp", addr, redis.DialDatabase(dbn))
	if err != nil {
		return false, "", err
	}
	defer c.Close()
	applied, err := redis.String(c.Do("HGET", channel, sink))
	if err != nil && err != redis.ErrNil {
		return false, "", err
	}
	for applied == "" || lsn(applied) < want {
		left := time.Until(deadline)
		if left <= 0 {
			return false, applied, nil
		}
		switch m := sub.ReceiveWithTimeout(left).(type) {
		case redis.Message:
			name, pos, ok := strings.Cut(string(m.Data), " ")
			if ok && name == sink && lsn(pos) > lsn(applied) {
				applied = pos
			}
		case error:
			if ne, ok := m.(interface{ Timeout() bool }); ok && ne.Timeout() {
				return false, applied, nil
			}
			return false, applied, m
		}
	}
	return true, applied, nil
}

// waitPostgres: the read PostgreSQL only.
func waitPostgres(readDSN, slot, sink, token string, timeout time.Duration) (bool, string, error) {
	want := lsn(token)
	deadline := time.Now().Add(timeout)
	l := pq.NewListener(readDSN, time.Second, time.Second, nil)
	defer l.Close()
	if err := l.Listen("walcast_applied"); err != nil { // first
		return false, "", err
	}
	db, err := sql.Open("postgres", readDSN)
	if err != nil {
		return false, "", err
	}
	defer db.Close()
	var applied string
	err = db.QueryRow("SELECT lsn::text FROM walcast_cursor WHERE slot = $1 AND sink = $2", slot, sink).Scan(&applied)
	if err != nil && err != sql.ErrNoRows {
		return false, "", err
	}
	for applied == "" || lsn(applied) < want {
		left := time.Until(deadline)
		if left <= 0 {
			return false, applied, nil
		}
		select {
		case n := <-l.Notify:
			if n == nil {
				continue // reconnected: the position is read again below
			}
			f := strings.Split(n.Extra, " ")
			if len(f) == 3 && f[0] == slot && f[1] == sink && lsn(f[2]) > lsn(applied) {
				applied = f[2]
			}
		case <-time.After(left):
		}
	}
	return true, applied, nil
}

var ctx = context.Background()

func main() {
	writeDSN := flag.String("write-dsn", "", "write database")
	readDSN := flag.String("read-dsn", "", "read database")
	redisAddr := flag.String("redis-addr", "127.0.0.1:6379", "redis host:port")
	redisDB := flag.Int("redis-db", 0, "redis database")
	slot := flag.String("slot", "", "walcast's replication slot")
	customer := flag.Int64("customer", 1, "customer id")
	timeoutMs := flag.Int("timeout-ms", 5000, "how long to wait")
	via := flag.String("via", "redis", "redis or postgres")
	flag.Parse()
	timeout := time.Duration(*timeoutMs) * time.Millisecond

	id, token, err := placeOrder(*writeDSN, *customer)
	if err != nil {
		fmt.Fprintln(os.Stderr, "rw: place order:", err)
		os.Exit(2)
	}
	var reached bool
	var applied, status string
	if *via == "postgres" {
		reached, applied, err = waitPostgres(*readDSN, *slot, "readdb", token, timeout)
		if err == nil {
			db, _ := sql.Open("postgres", *readDSN)
			db.QueryRow("SELECT status FROM order_summary WHERE order_id = $1", id).Scan(&status)
			db.Close()
		}
	} else {
		reached, applied, err = waitRedis(*redisAddr, *redisDB, *slot, "cache", token, timeout)
		if err == nil {
			c, _ := redis.Dial("tcp", *redisAddr, redis.DialDatabase(*redisDB))
			status, _ = redis.String(c.Do("HGET", fmt.Sprintf("order:%d", id), "status"))
			c.Close()
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "rw: wait:", err)
		os.Exit(2)
	}
	out, _ := json.Marshal(map[string]interface{}{"order_id": id, "token": token, "via": *via,
		"reached": reached, "applied": applied, "status": status})
	fmt.Println(string(out))
	if reached && status == "placed" {
		os.Exit(0)
	}
	os.Exit(1)
}
