/**
 * Checks requests and answers of Strata's Iceberg REST catalog against the published
 * OpenAPI document (iceberg/rest-catalog-open-api.yaml in the specs folder): the route
 * exists in the spec with that method, the request body fits its requestBody schema and
 * the answer fits the schema documented for its status. Only used where the specs are present.
 */
import Ajv2020Module from 'ajv/dist/2020.js';
import { specYaml } from './specs-dir.js';

export const ICEBERG_OPENAPI = 'iceberg/rest-catalog-open-api.yaml';

type AnyObj = Record<string, any>;

export function icebergSpecChecker() {
  const spec = specYaml(ICEBERG_OPENAPI) as AnyObj;
  const Ajv = ((Ajv2020Module as unknown as { default?: unknown }).default ?? Ajv2020Module) as new (o: object) => any;
  const ajv = new Ajv({ strict: false, allErrors: true, validateFormats: false });
  ajv.addSchema({ $id: 'iceberg-spec', components: { schemas: spec.components.schemas } });
  const rebase = (s: unknown): unknown =>
    JSON.parse(
      JSON.stringify(s).replace(/"\$ref":"#\/components\/schemas\//g, '"$ref":"iceberg-spec#/components/schemas/'),
    );
  const compiled = new Map<string, any>();
  const validator = (key: string, schema: unknown) => {
    if (!compiled.has(key)) compiled.set(key, ajv.compile(rebase(schema)));
    return compiled.get(key);
  };
  const deref = (x: AnyObj | undefined): AnyObj | undefined => {
    if (x && typeof x.$ref === 'string' && x.$ref.startsWith('#/components/')) {
      const [, , kind, name] = x.$ref.split('/');
      return deref(spec.components[kind][name]);
    }
    return x;
  };
  const templates = Object.keys(spec.paths).map((p) => ({
    path: p,
    re: new RegExp(`^${p.replace(/\{[^}]+\}/g, '[^/]+')}$`),
  }));

  /** The spec's path template for a catalog path (without the catalog's base), or undefined. */
  const route = (path: string) => templates.find((t) => t.re.test(path))?.path;

  return {
    spec,
    route,
    /** Problems with one exchange; `path` is the spec-side path (`/v1/…`). */
    problems(method: string, path: string, status: number, request: unknown, response: unknown): string[] {
      const tpl = route(path);
      if (!tpl) return [`${method} ${path}: no such path in the spec`];
      const op = spec.paths[tpl][method.toLowerCase()] as AnyObj | undefined;
      if (!op) return [`${method} ${tpl}: the spec has no ${method} here`];
      const out: string[] = [];
      const reqSchema = deref(op.requestBody)?.content?.['application/json']?.schema;
      if (reqSchema && request !== undefined) {
        const v = validator(`req ${method} ${tpl}`, reqSchema);
        if (!v(request)) out.push(`${method} ${tpl} request: ${ajv.errorsText(v.errors)}`);
      }
      const res = deref(op.responses?.[String(status)] ?? op.responses?.[`${String(status)[0]}XX`]);
      if (!res) out.push(`${method} ${tpl}: status ${status} is not documented`);
      else {
        const resSchema = res.content?.['application/json']?.schema;
        if (resSchema) {
          const v = validator(`res ${method} ${tpl} ${status}`, resSchema);
          if (!v(response)) out.push(`${method} ${tpl} ${status} answer: ${ajv.errorsText(v.errors)}`);
        } else if (response !== undefined && status !== 204)
          out.push(`${method} ${tpl} ${status}: the spec documents no body but one was sent`);
      }
      return out;
    },
  };
}
