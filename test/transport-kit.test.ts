// The transport kit fails transports with the planted bugs it once missed.
// Each broken transport is websocketTransport (a real one, over a real server
// on 127.0.0.1) with one deliberate change, and the honest one passes the
// same case.

import { type ConfirmedEvent, type Transport, TransportError, type TransportHandlers } from 'tidelog'
import { type TransportConformanceCase, type TransportKitOptions, transportConformanceCases } from 'tidelog/testing'
import { websocketTransport } from 'tidelog/transports/websocket'
import { describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { serverTransportSetup } from './helpers/server.js'

const waitMs = 2000

/** Cases over websocketTransport, each transport passed through `wrap`. */
function casesOver(
  name: string,
  wrap: (inner: Transport, options: TransportKitOptions) => Transport,
  make = (url: string, options: TransportKitOptions & { token?: string }) => websocketTransport({ url, WebSocket, ...options }),
): TransportConformanceCase[] {
  return transportConformanceCases(name, ({ backend }) => serverTransportSetup(backend, (url, options) => wrap(make(url, options), options)), { waitMs })
}

const honest = casesOver('websocketTransport', (inner) => inner)

const find = (cases: TransportConformanceCase[], start: string) => {
  const found = cases.find((c) => c.name.startsWith(start))
  if (!found) throw new Error(`no case named "${start}…" in the transport kit`)
  return found
}

/** Runs the case named `start` for the honest transport (it must pass) and the broken one (it must fail with `message`). */
async function failsOnlyBroken(broken: TransportConformanceCase[], start: string, message: RegExp) {
  expect(await find(honest, start).run()).toEqual({})
  await expect(find(broken, start).run()).rejects.toThrow(message)
}

/** Forwards everything to `inner`; override what a bug changes. */
function forward(inner: Transport, override: Partial<Transport> = {}): Transport {
  return {
    connect: (h) => inner.connect(h),
    pull: (r) => inner.pull(r),
    push: (r) => inner.push(r),
    close: () => inner.close(),
    ...override,
  }
}

describe('transport kit: planted bugs', () => {
  it('fails a connect() that waits for online, naming the connect, while the server is down', async () => {
    const broken = casesOver('waits-for-online', (inner) =>
      forward(inner, {
        connect: (h) => new Promise<void>((resolve) => void inner.connect({ ...h, onStatus: (s) => (h.onStatus(s), s.state === 'online' && resolve()) })),
      }),
    )
    await failsOnlyBroken(
      broken,
      'connect() settles while the server is down',
      /waits-for-online: connect\(\{ storeId: "conformance-\S+" \}\) did not settle within 2000 ms/,
    )
  })

  it('fails a transport that keeps a dropped request waiting for the next connection', async () => {
    const broken = casesOver('retries-inside', (inner) => {
      let online: (() => void) | undefined
      const retrying =
        <T>(call: () => Promise<T>) =>
        async () => {
          for (;;) {
            try {
              return await call()
            } catch (error) {
              if (!(error instanceof TransportError) || !error.retryable) throw error
              await new Promise<void>((resolve) => (online = resolve))
            }
          }
        }
      return forward(inner, {
        connect: (h) => inner.connect({ ...h, onStatus: (s) => (h.onStatus(s), s.state === 'online' && online?.()) }),
        pull: (r) => retrying(() => inner.pull(r))(),
      })
    })
    await failsOnlyBroken(
      broken,
      'rejects a request in flight when the connection drops',
      /retries-inside: pull\(\{ storeId: "conformance-\S+", since: 0 \}\) neither answered nor rejected within 2000 ms; the server went away while the request was in flight/,
    )
  })

  it('fails a transport without a request timeout', async () => {
    const broken = casesOver(
      'no-timeout',
      (inner) => inner,
      (url, options) => websocketTransport({ url, WebSocket, ...options, requestTimeoutMs: 3_600_000 }),
    )
    await failsOnlyBroken(
      broken,
      'rejects a request without an answer once its requestTimeoutMs passed',
      /no-timeout: pull\(\{ storeId: "conformance-\S+", since: 0 \}\) neither answered nor rejected within 2000 ms; the backend holds the answer back, and the transport was made with requestTimeoutMs: 100/,
    )
  })

  it('fails a transport that answers an offline pull with an empty page', async () => {
    const broken = casesOver('fake-page', (inner) =>
      forward(inner, {
        pull: (r) => inner.pull(r).catch(() => ({ type: 'pulled' as const, events: [], head: r.since, backendId: 'offline', more: false })),
      }),
    )
    await failsOnlyBroken(
      broken,
      'rejects pulls and pushes while offline',
      /fake-page: pull\(\{ storeId: "conformance-\S+", since: 0 \}\) while offline resolved \{"type":"pulled","events":\[\],"head":0,"backendId":"offline","more":false\}, but it must reject with a TransportError/,
    )
  })

  it('fails a server side that fans a push out before the backend accepted it', async () => {
    // every client of a storeId in this process hears a push the moment it is sent, numbered from the last head seen
    const peers = new Set<{ storeId: string; handlers: TransportHandlers }>()
    const heads = new Map<string, number>()
    const broken = casesOver('fan-out-first', (inner) => {
      let me: { storeId: string; handlers: TransportHandlers } | undefined
      return forward(inner, {
        connect(h) {
          me = { storeId: h.storeId, handlers: h }
          peers.add(me)
          return inner.connect(h)
        },
        async pull(r) {
          const page = await inner.pull(r)
          heads.set(r.storeId, Math.max(heads.get(r.storeId) ?? 0, page.head))
          return page
        },
        async push(r) {
          const head = heads.get(r.storeId) ?? 0
          const events: ConfirmedEvent[] = r.events.map((e, i) => ({ ...e, seq: head + i + 1 }))
          for (const peer of peers) if (peer !== me && peer.storeId === r.storeId) peer.handlers.onEvents(events, head + events.length)
          const answer = await inner.push(r)
          if (answer.type !== 'queued') heads.set(r.storeId, Math.max(head, answer.head))
          return answer
        },
      })
    })
    await failsOnlyBroken(
      broken,
      'notifies only events the backend stored',
      /fan-out-first: after a rejected and a refused push, the notifications of "conformance-\S+" broke the protocol: .*notified events \[1=bob:\d+, 2=bob:\d+\] of "conformance-\S+" were not in the backend when notified/s,
    )
  })

  it('fails a transport that hands every notification to the store connected last', async () => {
    let current: TransportHandlers | undefined // the bug: one module-level slot for all instances
    const broken = casesOver('one-slot', (inner) =>
      forward(inner, {
        connect(h) {
          current = h
          return inner.connect({ storeId: h.storeId, onStatus: (s) => h.onStatus(s), onEvents: (events, head) => current!.onEvents(events, head) })
        },
      }),
    )
    await failsOnlyBroken(broken, 'keeps two storeIds apart within one process', /one-slot: no notification of seq 2 of "conformance-\S+" within 2000 ms/)
  })

  it('fails a transport that reports a refused token without its code', async () => {
    const plain = (error: Error | undefined) => error && new TransportError('websocketTransport: connection failed; reconnecting.')
    const broken = casesOver('codeless', (inner) =>
      forward(inner, {
        connect: (h) => inner.connect({ ...h, onStatus: (s) => h.onStatus({ state: s.state, ...(s.error ? { error: plain(s.error) } : {}) }) }),
      }),
    )
    await failsOnlyBroken(
      broken,
      'reports a refused token as an error with code unauthorized',
      /a refused token must surface as a TransportError with code 'unauthorized'.*saw: connecting > offline \(transport_failed: websocketTransport: connection failed/s,
    )
  })

  it('fails a transport that never delivers notifications with a message, not a test timeout', async () => {
    const broken = casesOver('deaf', (inner) => forward(inner, { connect: (h) => inner.connect({ ...h, onEvents: () => {} }) }))
    const started = Date.now()
    await expect(find(broken, 'streams events after a pull reached the head').run()).rejects.toThrow(
      /deaf: no notification up to seq 9 within 2000 ms \(storeId "conformance-\S+"; statuses: connecting > online; known seq 3; notified seqs: none\)/,
    )
    // the kit's own wait gave up, well before any per-test timeout would have
    expect(Date.now() - started).toBeLessThan(3 * waitMs + 10_000)
  })
})

describe('transport kit: setup', () => {
  it('fails a transport that lets a second connect() through (one transport, one store)', async () => {
    // a second connect() hands the connection to the new handlers: the first store would hear nothing more
    const broken = casesOver('connects-twice', (inner) => {
      let handlers: TransportHandlers | undefined
      return forward(inner, {
        connect: async (h) => {
          if (handlers) {
            handlers = h
            return
          }
          handlers = h
          return inner.connect({ storeId: h.storeId, onEvents: (...a) => handlers!.onEvents(...a), onStatus: (s) => handlers!.onStatus(s) })
        },
      })
    })
    await failsOnlyBroken(broken, 'close() rejects requests in flight', /connects-twice: a second connect\(\) of a connected transport resolved/)
  })

  it('skips the cases that need hooks the setup lacks, saying which', async () => {
    const cases = transportConformanceCases('no-hooks', ({ backend }) => ({
      transport: () => forward({} as Transport),
      teardown: async () => void backend,
    }))
    for (const start of [
      'connect() settles while the server is down',
      'rejects a request in flight when the connection drops',
      'rejects pulls and pushes while offline',
    ]) {
      expect(await find(cases, start).run()).toEqual({ skipped: expect.stringMatching(/no stopServer\/startServer/) })
    }
    expect(await find(cases, 'reports a refused token').run()).toEqual({ skipped: expect.stringMatching(/no refusedTransport/) })
  })
})
