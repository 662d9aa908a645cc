-- examples/orders/read.sql - the read database of the order example: the projections walcast keeps.
--
-- walcast (role walcast) writes the projections and creates its own walcast_* tables (cursor, dead
-- letters) in schema public; role reader may only SELECT the projections.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'walcast') THEN
        CREATE ROLE walcast LOGIN REPLICATION;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'reader') THEN
        CREATE ROLE reader LOGIN;
    END IF;
END
$$;

-- One row per order, kept by OrderPlaced/Confirmed/Shipped/Cancelled. item_count = order lines.
CREATE TABLE public.order_summary (
    order_id    bigint PRIMARY KEY,
    customer_id bigint NOT NULL,
    status      text NOT NULL,
    total       numeric(12,2) NOT NULL,
    item_count  int NOT NULL,
    placed_at   timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);
-- "My orders, newest first" answered from the index alone.
CREATE INDEX order_summary_customer_placed
    ON public.order_summary (customer_id, placed_at DESC) INCLUDE (status, total);

-- Lifetime value: the totals of a customer's orders that were placed and not cancelled, and how many
-- such orders. OrderPlaced adds, OrderCancelled subtracts: additive, so each event must apply once.
CREATE TABLE public.customer_ltv (
    customer_id    bigint PRIMARY KEY,
    lifetime_value numeric(14,2) NOT NULL,
    orders         int NOT NULL,
    updated_at     timestamptz
);

REVOKE ALL ON public.order_summary, public.customer_ltv FROM PUBLIC;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.order_summary, public.customer_ltv TO walcast;
GRANT USAGE, CREATE ON SCHEMA public TO walcast;
GRANT USAGE ON SCHEMA public TO reader;
GRANT SELECT ON public.order_summary, public.customer_ltv TO reader;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO walcast, reader', current_database());
END
$$;
