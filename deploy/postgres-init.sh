#!/bin/sh
# Runs once, when the postgres volume is first initialised (/docker-entrypoint-initdb.d):
# one database role per component, each with its own password from the environment.
#   temporal          owns the temporal and temporal_visibility databases (nothing else)
#   strata_metastore  owns the strata database: the API runs its migrations
#   strata_worker     reads and writes strata's tables, cannot change the schema
# The superuser (POSTGRES_USER) is used by nobody but this script.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v temporal_pw="$TEMPORAL_DB_PASSWORD" \
  -v metastore_pw="$STRATA_METASTORE_DB_PASSWORD" \
  -v worker_pw="$STRATA_WORKER_DB_PASSWORD" <<'SQL'
CREATE ROLE temporal LOGIN PASSWORD :'temporal_pw';
CREATE ROLE strata_metastore LOGIN PASSWORD :'metastore_pw';
CREATE ROLE strata_worker LOGIN PASSWORD :'worker_pw';

CREATE DATABASE temporal OWNER temporal;
CREATE DATABASE temporal_visibility OWNER temporal;
CREATE DATABASE strata OWNER strata_metastore;
REVOKE ALL ON DATABASE temporal, temporal_visibility, strata FROM PUBLIC;
GRANT CONNECT ON DATABASE strata TO strata_worker;

\connect strata
ALTER SCHEMA public OWNER TO strata_metastore;
REVOKE ALL ON SCHEMA public FROM PUBLIC;
GRANT USAGE ON SCHEMA public TO strata_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE strata_metastore IN SCHEMA public GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO strata_worker;
ALTER DEFAULT PRIVILEGES FOR ROLE strata_metastore IN SCHEMA public GRANT USAGE, SELECT, UPDATE ON SEQUENCES TO strata_worker;
SQL
