-- DuckDB macro libraries (POST /api/v1/libraries with application/sql): SQL text of CREATE
-- MACRO statements, kept like JARs (libraries/{name}/{version}/{file} in the tenant's lake,
-- SHA-256 here); their macros are the version's functions (class 'macro' or 'table_macro').
ALTER TABLE library_versions DROP CONSTRAINT library_versions_kind_check;
ALTER TABLE library_versions ADD CONSTRAINT library_versions_kind_check CHECK (kind IN ('jar', 'python', 'duckdb'));
