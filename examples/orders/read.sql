-- examples/orders/read.sql - the read database of the order example: the projections walcast keeps.
--
-- Least privilege: role walcast may read and write the projections (TRUNCATE too, for a documented
-- `rebuild`) and its own walcast_* tables, which this script creates so that walcast needs no CREATE
-- on the schema and no REPLICATION here (the read database is not streamed from). Role reader may only
-- SELECT the projections: not walcast's tables, not the write side, no writes.

DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'walcast') THEN
        CREATE ROLE walcast LOGIN;
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

-- walcast's own tables (as the PostgreSQL sink would create them where its role may): the cursor,
-- written in the same transaction as the projections, the dead letters, and the owner (below).
CREATE TABLE IF NOT EXISTS public.walcast_cursor (
    slot       text,
    sink       text,
    lsn        pg_lsn NOT NULL,
    idx        bigint NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slot, sink)
);
CREATE TABLE IF NOT EXISTS public.walcast_dead_letters (
    id             bigserial PRIMARY KEY,
    slot           text,
    sink           text,
    lsn            pg_lsn,
    idx            bigint,
    event_id       text,
    event_type     text,
    aggregate_type text,
    aggregate_id   text,
    payload        text,
    error          text NOT NULL,
    created_at     timestamptz DEFAULT now()
);

-- Which projections each sink's cursor covers, with a fingerprint of each one's definition: a projection
-- added or changed since is reported at start with the command that rebuilds it.
CREATE TABLE IF NOT EXISTS public.walcast_projections (
    slot        text,
    sink        text,
    projection  text,
    fingerprint text NOT NULL,
    recorded_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (slot, sink, projection)
);

-- Which source and slot own each sink of this database (one engine per sink, see docs/configuration.md).
CREATE TABLE IF NOT EXISTS public.walcast_owner (
    sink              text PRIMARY KEY,
    system_identifier text NOT NULL,
    database          text NOT NULL,
    slot              text NOT NULL,
    since             timestamptz NOT NULL DEFAULT now()
);

-- Nobody creates objects in public by default (PostgreSQL 15 already revokes it; older clusters and
-- upgraded ones do not), and nobody gets anything on these tables but what follows.
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
REVOKE ALL ON public.order_summary, public.customer_ltv, public.walcast_cursor, public.walcast_dead_letters,
    public.walcast_owner, public.walcast_projections FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO walcast, reader;
-- The projections' statements read what they update (ON CONFLICT DO UPDATE, UPDATE ... WHERE); a rebuild
-- empties them with TRUNCATE.
GRANT SELECT, INSERT, UPDATE, TRUNCATE ON public.order_summary, public.customer_ltv TO walcast;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.walcast_cursor, public.walcast_dead_letters TO walcast;
GRANT USAGE ON SEQUENCE public.walcast_dead_letters_id_seq TO walcast;
GRANT SELECT, INSERT, DELETE ON public.walcast_owner TO walcast;
GRANT SELECT, INSERT, UPDATE, DELETE ON public.walcast_projections TO walcast;
GRANT SELECT ON public.order_summary, public.customer_ltv TO reader;
-- Read your writes: a reader may see how far each sink has applied (walcast_cursor.lsn, announced by
-- NOTIFY walcast_applied), and nothing else of walcast's tables.
GRANT SELECT (slot, sink, lsn) ON public.walcast_cursor TO reader;
DO $$
BEGIN
    EXECUTE format('GRANT CONNECT ON DATABASE %I TO walcast, reader', current_database());
END
$$;

-- Online rebuilds (`walcast rebuild`, `walcast verify`; docs/operations.md, "Rebuilding a projection")
-- build shadow tables in a schema of their own (walcast_shadow_<name>) and swap them in by renames: the
-- privileges beyond the above are CREATE on this database (for that schema) and on schema public (a
-- table moved into a schema needs it), and walcast's role owns the projection tables (only a table's
-- owner may move or drop it; the swap copies the other grants, reader's SELECT included, to the new
-- tables). Leave these out if you never rebuild online.
GRANT CREATE ON SCHEMA public TO walcast;
ALTER TABLE public.order_summary OWNER TO walcast;
ALTER TABLE public.customer_ltv OWNER TO walcast;
DO $$
BEGIN
    EXECUTE format('GRANT CREATE ON DATABASE %I TO walcast', current_database());
END
$$;
