-- The Iceberg REST catalog: one warehouse per tenant (its storage prefix is the tenant's
-- lake), namespaces, and tables as pointers to their current metadata file. A commit
-- moves the pointer only from the metadata it read (compare-and-set on
-- metadata_location): the optimistic concurrency the spec asks for. The metadata JSON is
-- kept beside the pointer so loading a table needs no storage read.
CREATE TABLE iceberg_namespaces (
  tenant      text NOT NULL,
  namespace   text NOT NULL,              -- levels joined by U+001F
  properties  jsonb NOT NULL DEFAULT '{}'::jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, namespace)
);

CREATE TABLE iceberg_tables (
  tenant             text NOT NULL,
  namespace          text NOT NULL,
  name               text NOT NULL,
  metadata_location  text NOT NULL,
  metadata           jsonb NOT NULL,
  created_at         timestamptz NOT NULL DEFAULT now(),
  updated_at         timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, namespace, name)
);

-- A mutation carrying an Idempotency-Key is applied once: a retry gets the first answer.
CREATE TABLE iceberg_idempotency (
  tenant      text NOT NULL,
  key         text NOT NULL,
  route       text NOT NULL,
  status      int NOT NULL,
  response    jsonb,
  created_at  timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (tenant, key)
);
