/**
 * The lake's object storage: one interface over a local folder (`file://…`, the embedded
 * default) and S3 (`s3://bucket/prefix` on AWS, MinIO, Ceph RGW). Keys are relative to
 * the store's root. Nothing Temporal here. Credentials stay in the client: they never
 * appear in URIs, errors or return values.
 */
import {
  CopyObjectCommand,
  DeleteObjectsCommand,
  GetObjectCommand,
  HeadObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
} from '@aws-sdk/client-s3';
import { createReadStream, createWriteStream } from 'node:fs';
import { copyFile, mkdir, open, readdir, readFile, rm, stat, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { Readable } from 'node:stream';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { errorField, errorNumber, errorString } from '../../schemas/errors.js';

export interface S3Config {
  endpoint?: string;
  region: string;
  accessKeyId?: string;
  secretAccessKey?: string;
  /** Path-style addressing (MinIO, Ceph); on by default when an endpoint is set. */
  forcePathStyle?: boolean;
}

/** An S3 client's settings for `cfg`: path-style with an endpoint unless told, the SDK's own credentials chain without keys. */
export const s3ClientConfig = (cfg: S3Config) => ({
  region: cfg.region,
  endpoint: cfg.endpoint,
  forcePathStyle: cfg.forcePathStyle ?? !!cfg.endpoint,
  credentials:
    cfg.accessKeyId && cfg.secretAccessKey
      ? { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey }
      : undefined,
});

export interface ByteRange {
  start: number;
  end: number;
}

export interface ObjectInfo {
  key: string;
  size: number;
  lastModified: Date;
}

export interface ObjectStore {
  /** The root URI, e.g. s3://lake/prod or file:///var/lake. */
  readonly root: string;
  uri(key: string): string;
  putFile(key: string, file: string): Promise<void>;
  putBytes(key: string, body: string | Uint8Array): Promise<void>;
  getFile(key: string, file: string): Promise<void>;
  /** The object's bytes, or those from `start` to `end` (inclusive). */
  getBytes(key: string, range?: ByteRange): Promise<Buffer>;
  head(key: string): Promise<ObjectInfo | undefined>;
  /** Every object whose key starts with prefix, in key order. */
  list(prefix: string): Promise<ObjectInfo[]>;
  delete(keys: string[]): Promise<void>;
  copy(from: string, to: string): Promise<void>;
  /** A local path for DuckDB to read the key in place, when the store is a folder. */
  localPath(key: string): string | undefined;
}

export function s3ConfigFromEnv(env: NodeJS.ProcessEnv = process.env): S3Config | undefined {
  if (!env.STRATA_S3_ENDPOINT && !env.STRATA_S3_ACCESS_KEY_ID && !env.AWS_ACCESS_KEY_ID) return undefined;
  return {
    endpoint: env.STRATA_S3_ENDPOINT,
    region: env.STRATA_S3_REGION ?? env.AWS_REGION ?? 'us-east-1',
    accessKeyId: env.STRATA_S3_ACCESS_KEY_ID ?? env.AWS_ACCESS_KEY_ID,
    secretAccessKey: env.STRATA_S3_SECRET_ACCESS_KEY ?? env.AWS_SECRET_ACCESS_KEY,
  };
}

/**
 * s3://BUCKET/PREFIX for a Hadoop-style S3 URI (s3n://, s3a:// as EMR reports LogUri), or
 * undefined when the URI is not on S3.
 */
export function toS3Uri(uri: string): string | undefined {
  const m = /^s3[na]?:\/\/([^/]+)(\/.*)?$/i.exec(uri.trim());
  return m ? `s3://${m[1]}${(m[2] ?? '').replace(/\/+$/, '')}` : undefined;
}

const join = (...parts: string[]) =>
  parts
    .filter(Boolean)
    .join('/')
    .replace(/\/{2,}/g, '/');

function cleanKey(key: string): string {
  const parts = key.split('/').filter((p) => p && p !== '.');
  if (parts.includes('..')) throw new StoreError(`key "${key}" climbs out of the store root: use a path inside it`);
  return parts.join('/');
}

export class StoreError extends Error {
  override name = 'StoreError';
}

/** The HTTP status an AWS SDK error carries in `$metadata`, if any. */
function httpStatus(e: unknown): number | undefined {
  return errorNumber(errorField(e, '$metadata'), 'httpStatusCode');
}

/** Opens the store for a root URI or a plain folder path. */
export function openStore(root: string, s3?: S3Config): ObjectStore {
  if (root.startsWith('s3://')) {
    const u = new URL(root);
    if (!u.hostname) throw new StoreError(`lake root "${root}" has no bucket: write s3://BUCKET/PREFIX`);
    if (!s3)
      throw new StoreError(
        `lake root ${root} is on S3 but the worker has no S3 settings: set STRATA_S3_ENDPOINT (for MinIO/Ceph) and STRATA_S3_ACCESS_KEY_ID / STRATA_S3_SECRET_ACCESS_KEY`,
      );
    return new S3Store(u.hostname, u.pathname.replace(/^\/+|\/+$/g, ''), s3);
  }
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(root) && !root.startsWith('file://'))
    throw new StoreError(
      `lake root "${root}" has an unknown scheme: use file://PATH, s3://BUCKET/PREFIX or a folder path`,
    );
  const dir = root.startsWith('file://') ? fileURLToPath(root) : path.resolve(root);
  return new FileStore(dir);
}

class FileStore implements ObjectStore {
  readonly root: string;
  constructor(private readonly dir: string) {
    this.root = pathToFileURL(dir).href;
  }
  private p(key: string) {
    return path.join(this.dir, cleanKey(key));
  }
  uri(key: string) {
    return pathToFileURL(this.p(key)).href;
  }
  localPath(key: string) {
    return this.p(key);
  }
  async putFile(key: string, file: string) {
    const dst = this.p(key);
    await mkdir(path.dirname(dst), { recursive: true });
    if (path.resolve(file) !== dst) await copyFile(file, dst);
  }
  async putBytes(key: string, body: string | Uint8Array) {
    const dst = this.p(key);
    await mkdir(path.dirname(dst), { recursive: true });
    await writeFile(dst, body);
  }
  async getFile(key: string, file: string) {
    await mkdir(path.dirname(file), { recursive: true });
    await copyFile(this.p(key), file);
  }
  async getBytes(key: string, range?: ByteRange) {
    if (!range) return readFile(this.p(key));
    const f = await open(this.p(key), 'r');
    try {
      const buf = Buffer.alloc(Math.max(0, range.end - range.start + 1));
      const { bytesRead } = await f.read(buf, 0, buf.length, range.start);
      return buf.subarray(0, bytesRead);
    } finally {
      await f.close();
    }
  }
  async head(key: string) {
    const s = await stat(this.p(key)).catch(() => undefined);
    return s?.isFile() ? { key: cleanKey(key), size: s.size, lastModified: s.mtime } : undefined;
  }
  async list(prefix: string) {
    const clean = cleanKey(prefix);
    // List from the deepest folder the prefix names, then filter by the full prefix.
    const base = prefix.endsWith('/') || !clean ? clean : clean.split('/').slice(0, -1).join('/');
    const out: ObjectInfo[] = [];
    const walk = async (rel: string) => {
      const entries = await readdir(path.join(this.dir, rel), { withFileTypes: true }).catch(() => []);
      for (const e of entries) {
        const k = rel ? `${rel}/${e.name}` : e.name;
        if (e.isDirectory()) await walk(k);
        else if (e.isFile() && (k.startsWith(clean + (prefix.endsWith('/') && clean ? '/' : '')) || !clean)) {
          const s = await stat(path.join(this.dir, k));
          out.push({ key: k, size: s.size, lastModified: s.mtime });
        }
      }
    };
    await walk(base);
    return out.sort((a, b) => (a.key < b.key ? -1 : a.key > b.key ? 1 : 0));
  }
  async delete(keys: string[]) {
    for (const k of keys) await rm(this.p(k), { force: true });
  }
  async copy(from: string, to: string) {
    const dst = this.p(to);
    await mkdir(path.dirname(dst), { recursive: true });
    await copyFile(this.p(from), dst);
  }
}

class S3Store implements ObjectStore {
  readonly root: string;
  private readonly s3: S3Client;
  constructor(
    private readonly bucket: string,
    private readonly prefix: string,
    cfg: S3Config,
  ) {
    this.root = `s3://${bucket}${prefix ? `/${prefix}` : ''}`;
    this.s3 = new S3Client({ ...s3ClientConfig(cfg), maxAttempts: 3 });
  }
  private k(key: string) {
    return join(this.prefix, cleanKey(key));
  }
  private rel(full: string) {
    return this.prefix ? full.slice(this.prefix.length + 1) : full;
  }
  uri(key: string) {
    return `s3://${this.bucket}/${this.k(key)}`;
  }
  localPath() {
    return undefined;
  }
  private async call<T>(what: string, f: () => Promise<T>): Promise<T> {
    try {
      return await f();
    } catch (e) {
      // SDK errors name the bucket and key, never the credentials; keep only those facts.
      const status = httpStatus(e);
      throw new StoreError(
        `s3 ${what}: ${errorString(e, 'name') ?? 'Error'}${status ? ` (HTTP ${status})` : ''}: ${errorString(e, 'message') ?? String(e)}`,
      );
    }
  }
  async putFile(key: string, file: string) {
    const s = await stat(file);
    // Small objects go as one buffer; large ones stream with their length declared.
    const body = s.size < 64 * 1024 * 1024 ? await readFile(file) : createReadStream(file);
    await this.call(`put ${this.uri(key)}`, () =>
      this.s3.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: body, ContentLength: s.size })),
    );
  }
  async putBytes(key: string, body: string | Uint8Array) {
    const bytes = typeof body === 'string' ? Buffer.from(body) : body;
    await this.call(`put ${this.uri(key)}`, () =>
      this.s3.send(
        new PutObjectCommand({ Bucket: this.bucket, Key: this.k(key), Body: bytes, ContentLength: bytes.byteLength }),
      ),
    );
  }
  async getFile(key: string, file: string) {
    await mkdir(path.dirname(file), { recursive: true });
    const r = await this.call(`get ${this.uri(key)}`, () =>
      this.s3.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.k(key) })),
    );
    if (!(r.Body instanceof Readable))
      throw new StoreError(`s3 get ${this.uri(key)}: the object's body is not a Node.js stream`);
    await pipeline(r.Body, createWriteStream(file));
  }
  async getBytes(key: string, range?: ByteRange) {
    const r = await this.call(`get ${this.uri(key)}`, () =>
      this.s3.send(
        new GetObjectCommand({
          Bucket: this.bucket,
          Key: this.k(key),
          ...(range ? { Range: `bytes=${range.start}-${range.end}` } : {}),
        }),
      ),
    );
    if (!r.Body) throw new StoreError(`s3 get ${this.uri(key)}: the object came without a body`);
    return Buffer.from(await r.Body.transformToByteArray());
  }
  async head(key: string) {
    try {
      const r = await this.s3.send(new HeadObjectCommand({ Bucket: this.bucket, Key: this.k(key) }));
      return { key: cleanKey(key), size: r.ContentLength ?? 0, lastModified: r.LastModified ?? new Date(0) };
    } catch (e) {
      if (httpStatus(e) === 404) return undefined;
      return this.call(`head ${this.uri(key)}`, () => Promise.reject(e instanceof Error ? e : new Error(String(e))));
    }
  }
  async list(prefix: string) {
    const full = prefix
      ? join(this.prefix, cleanKey(prefix)) + (prefix.endsWith('/') ? '/' : '')
      : this.prefix
        ? `${this.prefix}/`
        : '';
    const out: ObjectInfo[] = [];
    let token: string | undefined;
    do {
      const r = await this.call(`list s3://${this.bucket}/${full}`, () =>
        this.s3.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: full, ContinuationToken: token })),
      );
      for (const o of r.Contents ?? []) {
        if (o.Key === undefined)
          throw new StoreError(`s3 list s3://${this.bucket}/${full}: an object came without a key`);
        out.push({ key: this.rel(o.Key), size: o.Size ?? 0, lastModified: o.LastModified ?? new Date(0) });
      }
      token = r.IsTruncated ? r.NextContinuationToken : undefined;
    } while (token);
    return out;
  }
  async delete(keys: string[]) {
    for (let i = 0; i < keys.length; i += 1000) {
      const chunk = keys.slice(i, i + 1000);
      await this.call(`delete in ${this.root}`, () =>
        this.s3.send(
          new DeleteObjectsCommand({
            Bucket: this.bucket,
            Delete: { Objects: chunk.map((k) => ({ Key: this.k(k) })), Quiet: true },
          }),
        ),
      );
    }
  }
  async copy(from: string, to: string) {
    await this.call(`copy ${this.uri(from)} to ${this.uri(to)}`, () =>
      this.s3.send(
        new CopyObjectCommand({
          Bucket: this.bucket,
          Key: this.k(to),
          CopySource: encodeURI(`${this.bucket}/${this.k(from)}`),
        }),
      ),
    );
  }
}

/** Creates a bucket if it is missing (tests, the local stack). */
export async function ensureBucket(cfg: S3Config, bucket: string): Promise<void> {
  const { CreateBucketCommand, HeadBucketCommand } = await import('@aws-sdk/client-s3');
  const s3 = new S3Client({
    region: cfg.region,
    endpoint: cfg.endpoint,
    forcePathStyle: true,
    credentials:
      cfg.accessKeyId && cfg.secretAccessKey
        ? { accessKeyId: cfg.accessKeyId, secretAccessKey: cfg.secretAccessKey }
        : undefined,
  });
  try {
    await s3.send(new HeadBucketCommand({ Bucket: bucket }));
  } catch {
    await s3.send(new CreateBucketCommand({ Bucket: bucket }));
  }
  s3.destroy();
}
