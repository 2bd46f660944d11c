/**
 * Outside answers are checked, not cast (issue 11): an Airbyte answer that does not fit the
 * public API fails naming the request and the field; a problem body's fields are read only
 * when they are text; named connections are own fields whatever their name.
 */
import { describe, expect, it } from 'vitest';
import { AirbyteClient, AirbyteError } from '../../activities/airbyte/client.js';
import { connectionsFromEnv, resolveConnection } from '../../activities/sql/connections.js';

/** An Airbyte stand-in: the token endpoint, then `answer` for every other request. */
function airbyte(answer: (url: string) => Response): AirbyteClient {
  const fetchImpl = async (input: string | URL | Request): Promise<Response> => {
    const url = input instanceof Request ? input.url : String(input);
    if (url.endsWith('/applications/token'))
      return Response.json({ access_token: 'token', token_type: 'Bearer', expires_in: 180 });
    return answer(url);
  };
  return new AirbyteClient({ baseUrl: 'http://airbyte/v1', clientId: 'id', clientSecret: 'secret' }, fetchImpl);
}

const JOB = {
  jobId: 7,
  status: 'running',
  jobType: 'sync',
  startTime: '2026-11-01T00:00:00Z',
  connectionId: 'c1',
};

describe('Airbyte answers are checked against the public API', () => {
  it('passes a job that fits through, keeping fields beyond the ones Strata reads', async () => {
    const job = await airbyte(() => Response.json({ ...JOB, extra: 'kept' })).getJob(7);
    expect(job).toEqual({ ...JOB, extra: 'kept' });
  });

  it('fails a job without its jobId as a 502 naming the request and the field', async () => {
    const { jobId: _, ...noId } = JOB;
    const err = await airbyte(() => Response.json(noId))
      .getJob(7)
      .catch((e: unknown) => e);
    expect(err).toBeInstanceOf(AirbyteError);
    expect(err).toMatchObject({ status: 502, type: 'invalid-response' });
    expect(String((err as Error).message)).toMatch(/^Airbyte GET \/jobs\/7: the answer does not fit the API: .*jobId/);
  });

  it('fails a list whose items lack a workspace as a 502 (the API filters by workspace)', async () => {
    const source = {
      sourceId: 's1',
      name: 'pg',
      sourceType: 'postgres',
      definitionId: 'd',
      configuration: {},
      createdAt: 1,
    };
    const err = await airbyte(() => Response.json({ data: [source] }))
      .listSources()
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 502 });
    expect(String((err as Error).message)).toMatch(/^Airbyte GET \/sources: .*workspaceId/);
  });

  it('fails an answer that is not JSON as a 502 rather than a parse error', async () => {
    const err = await airbyte(() => new Response('<html>gateway</html>', { status: 200 }))
      .getJob(7)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 502, type: 'invalid-response' });
    expect(String((err as Error).message)).toMatch(/^Airbyte GET \/jobs\/7: the answer is not JSON/);
  });

  it('reads a problem body’s fields only when they are text', async () => {
    const err = await airbyte(() =>
      Response.json({ type: 'not-found', title: 'Not found', detail: { nested: true } }, { status: 404 }),
    )
      .getJob(7)
      .catch((e: unknown) => e);
    expect(err).toMatchObject({ status: 404, type: 'not-found', detail: undefined });
    expect(String((err as Error).message)).toBe('Airbyte GET /jobs/7: 404 Not found');
  });
});

describe('named connections', () => {
  it('are own fields, so a connection named __proto__ is found and the prototype untouched', () => {
    const conns = connectionsFromEnv({ STRATA_CONN___PROTO__: 'postgres://u:p@db/app' });
    expect(Object.getPrototypeOf(conns)).toBe(Object.prototype);
    expect(Object.hasOwn(conns, '__proto__')).toBe(true);
    expect(resolveConnection(conns, '__proto__', 'postgres', 'default').url).toBe('postgres://u:p@db/app');
  });
});
