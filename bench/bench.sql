-- bench/bench.sql - backlog generators for scripts/bench.sh (load into the write database after
-- examples/orders/write.sql). Every event is an OrderPlaced with the order example's payload shape
-- (order_id, customer_id, total, placed_at, items[{sku, qty, unit_price}]); order ids come from
-- shop.orders_id_seq, so every event is a new order and every projection write is an insert.

CREATE SCHEMA IF NOT EXISTS bench;

-- Where a backlog ends, for scripts/bench.sh: after_lsn is taken inside the backlog's last transaction,
-- after its inserts, so that transaction's commit LSN is the only one above it; last_idx is the index of
-- its last outbox row. A sink cursor (lsn, idx) has applied the whole backlog when lsn >= after_lsn and
-- idx is -1 or >= last_idx. The last transaction commits synchronously, so everything is flushed.
CREATE TABLE bench.marks (
    name      text PRIMARY KEY,
    after_lsn pg_lsn NOT NULL,
    last_idx  int NOT NULL
);

INSERT INTO shop.customers (email, name)
SELECT format('customer%s@example.com', g), format('Customer %s', g)
FROM generate_series(1, 200) g
ON CONFLICT (email) DO NOTHING;

-- 1-4 random order lines, as shop.run_workload makes them.
CREATE FUNCTION bench.random_items() RETURNS jsonb
LANGUAGE sql VOLATILE AS $$
    SELECT jsonb_agg(jsonb_build_object(
               'sku', format('SKU-%s', lpad((1 + floor(random() * 500))::int::text, 4, '0')),
               'qty', 1 + floor(random() * 5)::int,
               'unit_price', round((0.5 + random() * 199.5)::numeric, 2)))
    FROM generate_series(1, 1 + floor(random() * 4)::int)
$$;

-- Realistic single-event transactions: shop.place_order (order row, its lines, the outbox row), one
-- COMMIT per order. sync = false turns synchronous_commit off for this session only: the WAL is the
-- same, the generator just does not wait for each flush (the server keeps fsync = on).
CREATE PROCEDURE bench.single_event_txns(name text, n int, sync boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    v_customers bigint[] := ARRAY(SELECT id FROM shop.customers ORDER BY id);
BEGIN
    IF NOT sync THEN
        PERFORM set_config('synchronous_commit', 'off', false);
    END IF;
    FOR i IN 1 .. n LOOP
        PERFORM shop.place_order(v_customers[1 + floor(random() * array_length(v_customers, 1))::int],
                                 bench.random_items());
        IF i = n THEN
            INSERT INTO bench.marks VALUES (name, pg_current_wal_insert_lsn(), 0);
            PERFORM set_config('synchronous_commit', 'on', false);
        END IF;
        COMMIT;
    END LOOP;
END
$$;

-- Bulk events: n_events OrderPlaced rows straight into the outbox, in n_txns transactions of equal
-- size (an import or a batch job), payloads built in SQL with the same shape.
CREATE PROCEDURE bench.bulk_txns(name text, n_events bigint, n_txns int, sync boolean DEFAULT false)
LANGUAGE plpgsql AS $$
DECLARE
    per bigint := n_events / n_txns;
BEGIN
    IF NOT sync THEN
        PERFORM set_config('synchronous_commit', 'off', false);
    END IF;
    FOR t IN 1 .. n_txns LOOP
        INSERT INTO public.domain_events (aggregate_type, aggregate_id, event_type, payload, occurred_at)
        SELECT 'order', e.id::text, 'OrderPlaced',
               jsonb_build_object('order_id', e.id, 'customer_id', e.customer_id, 'total', e.total,
                                  'placed_at', shop.iso_ms(e.at), 'items', e.items),
               e.at
        FROM (SELECT nextval('shop.orders_id_seq') AS id, 1 + floor(random() * 200)::bigint AS customer_id,
                     round((5 + random() * 500)::numeric, 2) AS total, shop.now_ms() AS at,
                     jsonb_build_array(jsonb_build_object(
                         'sku', format('SKU-%s', lpad((1 + g % 500)::text, 4, '0')),
                         'qty', 1 + g % 5, 'unit_price', round((0.5 + random() * 199.5)::numeric, 2)))
                         AS items
              FROM generate_series(1, per) g) e;
        IF t = n_txns THEN
            INSERT INTO bench.marks VALUES (name, pg_current_wal_insert_lsn(), per - 1);
            PERFORM set_config('synchronous_commit', 'on', false);
        END IF;
        COMMIT;
    END LOOP;
END
$$;
