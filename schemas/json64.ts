/**
 * Iceberg's JSON holds 64-bit integers (snapshot ids are random longs) that JavaScript
 * numbers cannot carry. These parse integers beyond 2^53 as BigInt and write BigInts back
 * as plain JSON numbers, so ids round-trip exactly through the catalog. Values that fit
 * stay numbers: the same id always parses to the same type.
 */
const MARK = '\u0000bigint:';

/** JSON.parse, with integers beyond Number.MAX_SAFE_INTEGER as BigInt. */
export function parseJson<T = unknown>(text: string): T {
  let out = '';
  let last = 0;
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c === '"') {
      i++;
      while (i < text.length && text[i] !== '"') i += text[i] === '\\' ? 2 : 1;
      i++;
      continue;
    }
    if (c === '-' || (c >= '0' && c <= '9')) {
      const m = /^-?\d+(\.\d+)?([eE][+-]?\d+)?/.exec(text.slice(i, i + 400))!;
      const tok = m[0];
      if (!m[1] && !m[2] && !Number.isSafeInteger(Number(tok))) {
        out += text.slice(last, i) + JSON.stringify(MARK + tok);
        last = i + tok.length;
      }
      i += tok.length;
      continue;
    }
    i++;
  }
  out += text.slice(last);
  return JSON.parse(out, (_k, v: unknown) =>
    typeof v === 'string' && v.startsWith(MARK) ? BigInt(v.slice(MARK.length)) : v,
  ) as T;
}

/** JSON.stringify that writes BigInt as a JSON number. */
export function stringifyJson(value: unknown): string {
  return JSON.stringify(value, (_k, v: unknown) => (typeof v === 'bigint' ? MARK + v.toString() : v)).replace(
    /"\\u0000bigint:(-?\d+)"/g,
    '$1',
  );
}

/** An id as a JSON-safe value for comparison and map keys. */
export const idKey = (v: unknown) => String(v);
