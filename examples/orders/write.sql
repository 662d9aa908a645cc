-- examples/orders/write.sql - the write side of the order example (load into the write database).
--
-- Schema shop holds the state; public.domain_events is the outbox walcast streams. Every command is a
-- function that changes state and inserts its event in the caller's transaction, so state and event
-- commit (or roll back) together. Timestamps are truncated to milliseconds, the precision of the
-- events, so projections can be compared exactly with the state they were derived from.
--
-- Idempotent for roles (DO blocks); the tables are meant for a fresh database.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'walcast') THEN
        CREATE ROLE walcast LOGIN REPLICATION;
    ELSE
        ALTER ROLE walcast LOGIN REPLICATION;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN
        CREATE ROLE reader LOGIN;
    END IF;
END
$$;

CREATE SCHEMA shop;

CREATE TABLE shop.customers (
    id         bigserial PRIMARY KEY,
    email      text NOT NULL UNIQUE,
    name       text NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE shop.orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES shop.customers (id),
    status      text NOT NULL DEFAULT 'placed'
                CHECK (status IN ('placed', 'confirmed', 'shipped', 'cancelled')),
    total       numeric(12,2) NOT NULL CHECK (total >= 0),
    placed_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- "a random eligible order" in run_workload; also a customer's orders.
CREATE INDEX orders_status_id ON shop.orders (status, id);
CREATE INDEX orders_customer ON shop.orders (customer_id, placed_at DESC);

CREATE TABLE shop.order_items (
    order_id   bigint NOT NULL REFERENCES shop.orders (id),
    line_no    int NOT NULL,
    sku        text NOT NULL,
    qty        int NOT NULL CHECK (qty > 0),
    unit_price numeric(12,2) NOT NULL CHECK (unit_price >= 0),
    PRIMARY KEY (order_id, line_no)
);

CREATE TABLE public.domain_events (
    event_id       bigserial PRIMARY KEY,
    aggregate_type text NOT NULL,
    aggregate_id   text NOT NULL,
    event_type     text NOT NULL,
    payload        jsonb NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT now()
);

-- ISO 8601 UTC with 'T', 'Z' and milliseconds: the one timestamp format of every event.
CREATE FUNCTION shop.iso_ms(ts timestamptz) RETURNS text
LANGUAGE sql IMMUTABLE STRICT AS $$
    SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;

-- The command's timestamp: the transaction's time at millisecond precision.
CREATE FUNCTION shop.now_ms() RETURNS timestamptz
LANGUAGE sql STABLE AS $$
    SELECT date_trunc('milliseconds', now())
$$;

CREATE FUNCTION shop.emit(p_order_id bigint, p_event_type text, p_payload jsonb, p_at timestamptz)
RETURNS void LANGUAGE sql AS $$
    INSERT INTO public.domain_events (aggregate_type, aggregate_id, event_type, payload, occurred_at)
    VALUES ('order', p_order_id::text, p_event_type, p_payload, p_at)
$$;

-- Lock the order and return it; a clear error when it does not exist.
CREATE FUNCTION shop.lock_order(p_order_id bigint) RETURNS shop.orders
LANGUAGE plpgsql AS $$
DECLARE
    o shop.orders;
BEGIN
    SELECT * INTO o FROM shop.orders WHERE id = p_order_id FOR UPDATE;
    IF NOT FOUND THEN
        RAISE EXCEPTION 'order % does not exist', p_order_id USING ERRCODE = 'no_data_found';
    END IF;
    RETURN o;
END
$$;

-- items: [{"sku": "A-1", "qty": 2, "unit_price": 9.99}, ...] (unit_price a number or numeric string)
CREATE FUNCTION shop.place_order(p_customer_id bigint, p_items jsonb) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_id    bigint;
    v_at    timestamptz := shop.now_ms();
    v_total numeric(12,2);
    v_items jsonb;
BEGIN
    IF p_items IS NULL OR jsonb_typeof(p_items) <> 'array' OR jsonb_array_length(p_items) = 0 THEN
        RAISE EXCEPTION 'an order needs a non-empty array of items, got %', p_items
            USING ERRCODE = 'invalid_parameter_value';
    END IF;
    IF NOT EXISTS (SELECT 1 FROM shop.customers WHERE id = p_customer_id) THEN
        RAISE EXCEPTION 'customer % does not exist', p_customer_id USING ERRCODE = 'foreign_key_violation';
    END IF;

    INSERT INTO shop.orders (customer_id, status, total, placed_at, updated_at)
    VALUES (p_customer_id, 'placed', 0, v_at, v_at)
    RETURNING id INTO v_id;

    -- The CHECK constraints reject qty <= 0 and negative prices.
    INSERT INTO shop.order_items (order_id, line_no, sku, qty, unit_price)
    SELECT v_id, i.ord::int, i.item->>'sku', (i.item->>'qty')::int, (i.item->>'unit_price')::numeric(12,2)
    FROM jsonb_array_elements(p_items) WITH ORDINALITY AS i(item, ord);

    SELECT coalesce(sum(qty * unit_price), 0)::numeric(12,2),
           jsonb_agg(jsonb_build_object('sku', sku, 'qty', qty, 'unit_price', unit_price) ORDER BY line_no)
    INTO v_total, v_items
    FROM shop.order_items WHERE order_id = v_id;

    UPDATE shop.orders SET total = v_total WHERE id = v_id;

    PERFORM shop.emit(v_id, 'OrderPlaced', jsonb_build_object(
        'order_id', v_id,
        'customer_id', p_customer_id,
        'total', v_total,
        'placed_at', shop.iso_ms(v_at),
        'items', v_items), v_at);
    RETURN v_id;
END
$$;

CREATE FUNCTION shop.confirm_order(p_order_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o    shop.orders := shop.lock_order(p_order_id);
    v_at timestamptz := shop.now_ms();
BEGIN
    IF o.status <> 'placed' THEN
        RAISE EXCEPTION 'order % cannot be confirmed: it is %, only a placed order can be', o.id, o.status
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE shop.orders SET status = 'confirmed', updated_at = v_at WHERE id = o.id;
    PERFORM shop.emit(o.id, 'OrderConfirmed', jsonb_build_object(
        'order_id', o.id, 'customer_id', o.customer_id, 'confirmed_at', shop.iso_ms(v_at)), v_at);
END
$$;

CREATE FUNCTION shop.ship_order(p_order_id bigint) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o    shop.orders := shop.lock_order(p_order_id);
    v_at timestamptz := shop.now_ms();
BEGIN
    IF o.status <> 'confirmed' THEN
        RAISE EXCEPTION 'order % cannot be shipped: it is %, only a confirmed order can be', o.id, o.status
            USING ERRCODE = 'check_violation';
    END IF;
    UPDATE shop.orders SET status = 'shipped', updated_at = v_at WHERE id = o.id;
    PERFORM shop.emit(o.id, 'OrderShipped', jsonb_build_object(
        'order_id', o.id, 'customer_id', o.customer_id, 'shipped_at', shop.iso_ms(v_at)), v_at);
END
$$;

CREATE FUNCTION shop.cancel_order(p_order_id bigint, p_reason text) RETURNS void
LANGUAGE plpgsql AS $$
DECLARE
    o    shop.orders := shop.lock_order(p_order_id);
    v_at timestamptz := shop.now_ms();
BEGIN
    IF o.status NOT IN ('placed', 'confirmed') THEN
        RAISE EXCEPTION 'order % cannot be cancelled: it is %, only a placed or confirmed order can be',
            o.id, o.status USING ERRCODE = 'check_violation';
    END IF;
    UPDATE shop.orders SET status = 'cancelled', updated_at = v_at WHERE id = o.id;
    PERFORM shop.emit(o.id, 'OrderCancelled', jsonb_build_object(
        'order_id', o.id, 'customer_id', o.customer_id, 'total', o.total,
        'reason', coalesce(p_reason, ''), 'cancelled_at', shop.iso_ms(v_at)), v_at);
END
$$;

-- A random eligible order (status one of p_statuses), or NULL: the first at or after a random id.
CREATE FUNCTION shop.random_order(p_statuses text[]) RETURNS bigint
LANGUAGE plpgsql AS $$
DECLARE
    v_max bigint;
    v_id  bigint;
BEGIN
    SELECT max(id) INTO v_max FROM shop.orders;
    IF v_max IS NULL THEN
        RETURN NULL;
    END IF;
    SELECT id INTO v_id FROM shop.orders
    WHERE status = ANY (p_statuses) AND id >= 1 + floor(random() * v_max)::bigint
    ORDER BY id LIMIT 1;
    IF v_id IS NULL THEN
        SELECT id INTO v_id FROM shop.orders WHERE status = ANY (p_statuses) ORDER BY id LIMIT 1;
    END IF;
    RETURN v_id;
END
$$;

-- n random commands, each committed on its own (CALL it outside a transaction block):
-- ~50% place, 20% confirm, 15% ship, 15% cancel; a command with no eligible order places one instead.
-- seed in [-1, 1] makes the run repeatable (setseed); NULL leaves the session's generator alone.
CREATE PROCEDURE shop.run_workload(n int, seed float DEFAULT NULL)
LANGUAGE plpgsql AS $$
DECLARE
    v_customers bigint[];
    v_r         float;
    v_id        bigint;
    v_items     jsonb;
    v_reasons   text[] := ARRAY['customer request', 'out of stock', 'payment failed', 'duplicate order'];
BEGIN
    IF seed IS NOT NULL THEN
        PERFORM setseed(seed);
    END IF;
    INSERT INTO shop.customers (email, name)
    SELECT format('customer%s@example.com', g), format('Customer %s', g)
    FROM generate_series(1, 200) g
    ON CONFLICT (email) DO NOTHING;
    COMMIT;
    v_customers := ARRAY(SELECT id FROM shop.customers ORDER BY id);

    FOR i IN 1 .. n LOOP
        v_r := random();
        v_id := NULL;
        IF v_r >= 0.5 AND v_r < 0.7 THEN
            v_id := shop.random_order(ARRAY['placed']);
            IF v_id IS NOT NULL THEN
                PERFORM shop.confirm_order(v_id);
            END IF;
        ELSIF v_r >= 0.7 AND v_r < 0.85 THEN
            v_id := shop.random_order(ARRAY['confirmed']);
            IF v_id IS NOT NULL THEN
                PERFORM shop.ship_order(v_id);
            END IF;
        ELSIF v_r >= 0.85 THEN
            v_id := shop.random_order(ARRAY['placed', 'confirmed']);
            IF v_id IS NOT NULL THEN
                PERFORM shop.cancel_order(v_id, v_reasons[1 + floor(random() * array_length(v_reasons, 1))::int]);
            END IF;
        END IF;
        IF v_id IS NULL THEN
            SELECT jsonb_agg(jsonb_build_object(
                       'sku', format('SKU-%s', lpad((1 + floor(random() * 500))::int::text, 4, '0')),
                       'qty', 1 + floor(random() * 5)::int,
                       'unit_price', round((0.5 + random() * 199.5)::numeric, 2)))
            INTO v_items
            FROM generate_series(1, 1 + floor(random() * 4)::int);
            PERFORM shop.place_order(v_customers[1 + floor(random() * array_length(v_customers, 1))::int],
                                     v_items);
        END IF;
        COMMIT;
    END LOOP;
END
$$;

-- walcast reads the outbox and nothing else; nobody else gets anything by default.
REVOKE ALL ON SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL TABLES IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON ALL FUNCTIONS IN SCHEMA shop FROM PUBLIC;
REVOKE ALL ON PROCEDURE shop.run_workload(int, float) FROM PUBLIC;
REVOKE ALL ON public.domain_events FROM PUBLIC;
GRANT SELECT ON public.domain_events TO walcast;
DO $$
BEGIN
    -- Only walcast (and the owner) may connect to the write database: reader gets nothing here.
    EXECUTE format('REVOKE CONNECT, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO walcast', current_database());
END
$$;
