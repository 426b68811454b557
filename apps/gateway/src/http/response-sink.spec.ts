/**
 * HttpResponseSink over a real Node HTTP server and socket: how many socket writes a streamed response costs (every
 * write is a syscall and a wake-up of the client), and that the bytes the client reads are still a well-formed SSE
 * body on a connection that stays usable.
 */
import http from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { HttpResponseSink } from './response-sink';

type Handler = (sink: HttpResponseSink, writes: () => number) => Promise<void> | void;

const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));

/** One server whose handler gets a sink over the response, and counts the writes its socket makes. */
async function serve(handler: Handler): Promise<{ url: string; close: () => Promise<void> }> {
  const server = http.createServer((req, res) => {
    const socket = res.socket as Socket & { _write: (...a: unknown[]) => void; _writev?: (...a: unknown[]) => void };
    let count = 0;
    const write = socket._write;
    const writev = socket._writev;
    socket._write = function (...a: unknown[]) {
      count++;
      return write.apply(this, a);
    };
    if (writev) {
      socket._writev = function (...a: unknown[]) {
        count++;
        return writev.apply(this, a);
      };
    }
    // The counting wrappers stay for this request only: the next one on the connection counts afresh.
    res.once('finish', () => {
      socket._write = write;
      if (writev) socket._writev = writev;
    });
    void handler(new HttpResponseSink({ raw: res, hijack: () => undefined }), () => count);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}/`,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}

const dataOf = (body: string) => [...body.matchAll(/^data: (.*)$/gm)].map((m) => m[1]);

describe('HttpResponseSink', () => {
  it('sends the headers with the first turn of events and [DONE] with the end of the body: two writes for two turns', async () => {
    let writes = -1;
    const srv = await serve(async (sink, count) => {
      sink.startEvents();
      sink.event('{"n":1}');
      sink.event('{"n":2}');
      await nextTurn();
      sink.event('{"n":3}');
      sink.event('[DONE]');
      sink.end();
      writes = count();
    });
    try {
      const res = await fetch(srv.url);
      expect(res.status).toBe(200);
      expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
      expect(dataOf(await res.text())).toEqual(['{"n":1}', '{"n":2}', '{"n":3}', '[DONE]']);
      expect(writes).toBe(2);
    } finally {
      await srv.close();
    }
  });

  it('flushes the headers at the end of the turn even when no event follows yet', async () => {
    let release!: () => void;
    const released = new Promise<void>((resolve) => (release = resolve));
    const srv = await serve(async (sink) => {
      sink.startEvents();
      await released;
      sink.event('late');
      sink.end();
    });
    try {
      // The status arrives while the server still waits for this test's go-ahead.
      const res = await fetch(srv.url);
      expect(res.status).toBe(200);
      release();
      expect(dataOf(await res.text())).toEqual(['late']);
    } finally {
      await srv.close();
    }
  });

  it('ends a response with nothing corked in one write, and the next request on the keep-alive connection streams normally', async () => {
    const counts: number[] = [];
    const srv = await serve(async (sink, count) => {
      sink.startEvents();
      sink.event('a');
      await nextTurn();
      await nextTurn();
      sink.end();
      counts.push(count());
    });
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const get = () =>
      new Promise<{ body: string; socket: unknown }>((resolve, reject) => {
        http
          .get(srv.url, { agent }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (d: string) => (body += d));
            res.on('end', () => resolve({ body, socket: res.socket }));
          })
          .on('error', reject);
      });
    try {
      const first = await get();
      const second = await get();
      expect(dataOf(first.body)).toEqual(['a']);
      expect(dataOf(second.body)).toEqual(['a']);
      expect(second.socket).toBe(first.socket);
      // Headers and the event in one write, the end of the body in another.
      expect(counts).toEqual([2, 2]);
    } finally {
      agent.destroy();
      await srv.close();
    }
  });
});
