-- The playground shop's tables (the demo's "real" shop database).
-- Types mirror lakehouse.ingest.cdc.MIRRORED_TABLES, which the silver mirrors are built from.
CREATE TABLE IF NOT EXISTS public.inventory (
    sku        text        NOT NULL,
    warehouse  text        NOT NULL,
    quantity   integer     NOT NULL,
    updated_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (sku, warehouse)
);

CREATE TABLE IF NOT EXISTS public.orders (
    order_id    text          PRIMARY KEY,
    customer_id text          NOT NULL,
    status      text          NOT NULL,
    amount      numeric(12,2) NOT NULL,
    currency    char(3)       NOT NULL,
    created_at  timestamptz   NOT NULL DEFAULT now(),
    updated_at  timestamptz   NOT NULL DEFAULT now()
);
