/** Small helpers for the protocol doubles: a node:http server on 127.0.0.1 and a random port. */
import http from 'node:http';
import type { AddressInfo } from 'node:net';

export interface Served {
  url: string;
  port: number;
  close(): Promise<void>;
}

export async function serve(
  handler: (req: http.IncomingMessage, body: string, res: http.ServerResponse) => void | Promise<void>,
): Promise<Served> {
  const server = http.createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      Promise.resolve(handler(req, body, res)).catch((e) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' });
        res.end(String(e?.stack ?? e));
      });
    });
  });
  return listen(server);
}

/** Listens on a free port of 127.0.0.1; `close` also ends open keep-alive connections. */
export async function listen(server: http.Server): Promise<Served> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

export function sendJson(res: http.ServerResponse, status: number, body: unknown, type = 'application/json') {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': type, 'content-length': Buffer.byteLength(text) });
  res.end(text);
}
