/** A name as an SQL identifier (DuckDB, Postgres): double quotes, doubled inside. */
export function quoteIdent(s: string): string {
  return `"${s.replaceAll('"', '""')}"`;
}

/** A name as an identifier in a source database's dialect: MySQL/MariaDB quote with backticks. */
export function quoteIdentIn(engine: 'postgres' | 'mysql', s: string): string {
  return engine === 'mysql' ? `\`${s.replaceAll('`', '``')}\`` : quoteIdent(s);
}

/** A string as an SQL literal, in a module of its own so that light readers need not load the SQL runners. */
export function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}
