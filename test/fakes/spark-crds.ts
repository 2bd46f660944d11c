/**
 * The Spark Operator's CustomResourceDefinitions as the test cluster installs them, made from
 * the project's own schemas of the objects (spark-schemas.ts) — the operator's CRD files are
 * third-party documents kept outside the repository. The schemas become structural
 * (what the API server requires): every node typed, open objects marked
 * `x-kubernetes-preserve-unknown-fields`, `metadata` left to the API server. Like the real
 * CRDs, `status` is a subresource (only the operator writes it) and unknown fields are pruned.
 *
 * test/unit/doubles-vs-specs.test.ts checks that the schemas are a restriction of the real
 * CRDs when those are present, so what this CRD accepts, the operator's CRD accepts.
 */
import { SPARK_APPLICATION_SCHEMA, SPARK_CONNECT_SCHEMA } from './spark-schemas.js';

type Schema = Record<string, unknown>;

/** A structural version of a JSON Schema (the subset spark-schemas.ts uses). */
export function structural(s: Schema, root = false): Schema {
  const out: Schema = {};
  for (const k of ['type', 'enum', 'minimum', 'required'] as const) if (s[k] !== undefined) out[k] = s[k];
  if (s.items) out.items = structural(s.items as Schema);
  if (typeof s.additionalProperties === 'object')
    out.additionalProperties = structural(s.additionalProperties as Schema);
  if (s.properties) {
    const props = Object.entries(s.properties as Record<string, Schema>).filter(([k]) => !(root && k === 'metadata'));
    out.properties = Object.fromEntries(props.map(([k, v]) => [k, structural(v)]));
  }
  if (s.type === 'object' && !s.properties && s.additionalProperties === undefined)
    out['x-kubernetes-preserve-unknown-fields'] = true;
  if (root) out.required = ((s.required as string[] | undefined) ?? []).filter((r) => r !== 'metadata');
  return out;
}

export interface Crd {
  apiVersion: 'apiextensions.k8s.io/v1';
  kind: 'CustomResourceDefinition';
  metadata: { name: string; annotations: Record<string, string> };
  spec: Record<string, unknown>;
}

function crd(kind: string, plural: string, shortName: string, version: string, schema: Schema): Crd {
  return {
    apiVersion: 'apiextensions.k8s.io/v1',
    kind: 'CustomResourceDefinition',
    // *.k8s.io groups are protected: the operator's CRDs carry this approval, so ours do too.
    metadata: {
      name: `${plural}.sparkoperator.k8s.io`,
      annotations: { 'api-approved.kubernetes.io': 'https://github.com/kubeflow/spark-operator/pull/1298' },
    },
    spec: {
      group: 'sparkoperator.k8s.io',
      names: { kind, listKind: `${kind}List`, plural, singular: kind.toLowerCase(), shortNames: [shortName] },
      scope: 'Namespaced',
      versions: [
        {
          name: version,
          served: true,
          storage: true,
          schema: { openAPIV3Schema: structural(schema, true) },
          subresources: { status: {} },
        },
      ],
    },
  };
}

export function sparkCrds(): Crd[] {
  return [
    crd('SparkApplication', 'sparkapplications', 'sparkapp', 'v1beta2', SPARK_APPLICATION_SCHEMA),
    crd('SparkConnect', 'sparkconnects', 'sparkconn', 'v1alpha1', SPARK_CONNECT_SCHEMA),
  ];
}
