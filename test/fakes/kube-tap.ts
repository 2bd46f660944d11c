/**
 * A tap in front of the test cluster's real kube-apiserver, the way `kubectl proxy` stands in
 * front of one: Strata's client talks plain HTTP to it, and it forwards every request (watches
 * and followed logs stream through) to the API server, authenticated as the cluster admin. It
 * answers nothing itself, except the faults a test asks for (`failNext`: a 5xx burst, as an
 * API server under load or a broken load balancer gives), and it records what passed: the
 * method, path, query and the API server's status, so a test can count the creates that
 * reached the server or see that nothing did.
 */
import http from 'node:http';
import https from 'node:https';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { KubeConfig } from '@kubernetes/client-node';
import { listen, sendJson, type Served } from './http.js';

export interface TapRecord {
  method: string;
  path: string;
  query: URLSearchParams;
  /** The API server's status (or the injected fault's); 0 while the answer has not begun. */
  status: number;
}

export class KubeTap {
  readonly records: TapRecord[] = [];
  private failures: { match: (m: string, p: string) => boolean; status: number; left: number }[] = [];
  private constructor(
    private readonly served: Served,
    readonly upstream: string,
  ) {}

  /** Starts a tap forwarding to the cluster of `adminKubeconfig` with its credentials. */
  static async start(adminKubeconfig: string): Promise<KubeTap> {
    const kc = new KubeConfig();
    kc.loadFromFile(adminKubeconfig);
    const upstream = new URL(kc.getCurrentCluster()!.server);
    const tls: https.RequestOptions = {};
    await kc.applyToHTTPSOptions(tls);
    const at: { tap?: KubeTap } = {};
    const server = http.createServer((req, res) => at.tap!.forward(req, res, upstream, tls));
    at.tap = new KubeTap(await listen(server), upstream.origin);
    return at.tap;
  }

  get url() {
    return this.served.url;
  }
  close() {
    return this.served.close();
  }

  /** A kubeconfig pointing at the tap (what the worker under test is given; plain HTTP on the loopback, hence no TLS to verify). */
  async writeKubeconfig(dir: string, name = `tap-${this.served.port}`): Promise<string> {
    const file = path.join(dir, `${name}.kubeconfig`);
    await writeFile(
      file,
      `apiVersion: v1
kind: Config
clusters:
- name: tap
  cluster: { server: ${this.url}, insecure-skip-tls-verify: true }
contexts:
- name: tap
  context: { cluster: tap, user: strata }
current-context: tap
users:
- name: strata
  user: { token: through-the-tap }
`,
    );
    return file;
  }

  /** The next `count` requests matching answer `status` without reaching the API server. */
  failNext(count: number, status = 503, match: (method: string, path: string) => boolean = () => true) {
    this.failures.push({ match, status, left: count });
  }

  count(method: string, pathRe: RegExp, status?: number) {
    return this.records.filter(
      (r) => r.method === method && pathRe.test(r.path) && (status === undefined || r.status === status),
    ).length;
  }

  private forward(req: http.IncomingMessage, res: http.ServerResponse, upstream: URL, tls: https.RequestOptions) {
    const url = new URL(req.url!, 'http://tap');
    const record: TapRecord = { method: req.method!, path: url.pathname, query: url.searchParams, status: 0 };
    this.records.push(record);
    const failure = this.failures.find((f) => f.left > 0 && f.match(record.method, record.path));
    if (failure) {
      failure.left--;
      record.status = failure.status;
      req.resume();
      sendJson(res, failure.status, {
        kind: 'Status',
        apiVersion: 'v1',
        metadata: {},
        status: 'Failure',
        message: 'the server is currently unable to handle the request',
        reason: failure.status === 503 ? 'ServiceUnavailable' : 'InternalError',
        code: failure.status,
      });
      return;
    }
    const headers = { ...req.headers, host: upstream.host };
    delete headers.authorization;
    const up = https.request(
      {
        ...tls,
        headers: { ...(tls.headers ?? {}), ...headers },
        hostname: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
      },
      (answer) => {
        record.status = answer.statusCode ?? 0;
        res.writeHead(answer.statusCode ?? 502, answer.headers);
        answer.pipe(res);
        answer.on('error', () => res.destroy());
      },
    );
    up.on('error', (e) => {
      if (!res.headersSent) sendJson(res, 502, { kind: 'Status', status: 'Failure', message: String(e), code: 502 });
      else res.destroy();
    });
    // A client that goes away (an aborted follow or watch) ends the upstream request too.
    res.on('close', () => up.destroy());
    req.pipe(up);
  }
}
