/** A string as an SQL literal, in a module of its own so that light readers need not load the SQL runners. */
export function quoteLiteral(s: string): string {
  return `'${s.replaceAll("'", "''")}'`;
}
