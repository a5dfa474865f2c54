import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import type { ConfirmedEvent, PendingEvent, PullResponse } from '../protocol.js'
import type { SyncBackend, Transport, TransportStatus } from '../transport.js'

/**
 * What `setup` gives the kit for one test. `setup` runs before every test and
 * `teardown` after it, so each test gets a fresh server and backend.
 * @example
 * const backend = memoryBackend()
 * let server = await createSyncServer({ backend, port: 0 })
 * const port = server.port
 * return {
 *   backend,
 *   transport: () => websocketTransport({ url: server.url, WebSocket }),
 *   stopServer: () => server.close(),
 *   startServer: async () => { server = await createSyncServer({ backend, port }) },
 *   teardown: async () => { await server.close(); await backend.close() },
 * }
 */
export interface TransportConformanceSetup {
  /** Makes a new, not yet connected transport to `backend`; the kit calls it once or more per test and closes what it made. */
  transport(): Transport
  /** The backend behind the transports; the kit also pushes to it directly, as another client would. */
  backend: SyncBackend
  /** Drops every connection server-side and refuses new ones until `startServer` (e.g. `server.close()`). Without both, the reconnect check is skipped. */
  stopServer?: () => Promise<void>
  /** Serves again at the same address over the same backend. */
  startServer?: () => Promise<void>
  /** Releases what setup made (server, backend); runs after the kit closed its transports. */
  teardown(): Promise<void>
}

/** Options of `runTransportConformance`. */
export interface TransportConformanceOptions {
  /** The transport answers without I/O (like localTransport), so no request can be in flight when `close()` runs; that check is skipped. */
  inProcess?: boolean
  /** How long to wait for an expected answer, notification or status before failing. Default 10_000 ms. */
  waitMs?: number
  /** Per-test timeout. Default 30_000 ms. */
  testTimeoutMs?: number
}

interface Client {
  transport: Transport
  statuses: TransportStatus['state'][]
  batches: ConfirmedEvent[][]
  /** Problems seen in notifications: a batch starting past what the client knows, out of order, or past its head. */
  violations: string[]
  /** Highest seq the client holds contiguously, from its pulls and the notifications. */
  known: number
  pull(since: number, limit?: number): Promise<PullResponse>
  waitFor(what: string, done: () => boolean): Promise<void>
}

let counter = 0
const runId = Math.random().toString(36).slice(2, 8)

function makeEvents(clientId: string, n: number): PendingEvent[] {
  return Array.from({ length: n }, () => {
    const i = ++counter
    return { id: `${clientId}:${i}`, name: 'noted', args: { i, text: `event ${i}`, nested: [i, { ok: true }] }, clientId, sessionId: 'conformance', createdAt: 1_700_000_000_000 + i }
  })
}

const isTransportError = (error: unknown): error is Error & { retryable: boolean; protocolCode?: string } =>
  error instanceof Error && error.name === 'TransportError'

async function rejection(promise: Promise<unknown>): Promise<unknown> {
  try {
    await promise
  } catch (error) {
    return error
  }
  throw new Error('expected the request to reject, but it resolved')
}

/**
 * Registers the transport acceptance suite (vitest `describe`/`it`) for a
 * transport implementation: request/answer shapes, idempotent retries,
 * paging, live notifications in seq order without gaps, reconnect, close and
 * protocol errors. Call it at the top level of a test file.
 * @example runTransportConformance('websocketTransport', async () => ({ ... }))
 */
export function runTransportConformance(
  name: string,
  setup: () => TransportConformanceSetup | Promise<TransportConformanceSetup>,
  options: TransportConformanceOptions = {},
): void {
  const waitMs = options.waitMs ?? 10_000
  const timeout = options.testTimeoutMs ?? 30_000

  describe(`${name} (transport conformance)`, () => {
    let ctx: TransportConformanceSetup
    let storeId: string
    let made: Transport[] = []

    beforeEach(async () => {
      ctx = await setup()
      storeId = `conformance-${runId}-${++counter}`
      made = []
    })
    afterEach(async () => {
      await Promise.allSettled(made.map((t) => t.close()))
      await ctx.teardown()
    })

    async function open(forStore = storeId): Promise<Client> {
      const transport = ctx.transport()
      made.push(transport)
      const waiters = new Set<() => void>()
      const wake = () => waiters.forEach((w) => w())
      const client: Client = {
        transport,
        statuses: [],
        batches: [],
        violations: [],
        known: 0,
        async pull(since, limit) {
          const page = await transport.pull(limit === undefined ? { storeId: forStore, since } : { storeId: forStore, since, limit })
          client.known = Math.max(client.known, since + page.events.length)
          return page
        },
        waitFor(what, done) {
          return new Promise((resolve, reject) => {
            const check = () => {
              if (!done()) return
              waiters.delete(check)
              clearTimeout(timer)
              resolve()
            }
            const timer = setTimeout(() => {
              waiters.delete(check)
              reject(new Error(`${name}: no ${what} within ${waitMs} ms (statuses: ${client.statuses.join(' > ')}; known seq ${client.known})`))
            }, waitMs)
            waiters.add(check)
            check()
          })
        },
      }
      await transport.connect({
        storeId: forStore,
        onEvents(events, head) {
          const seqs = events.map((e) => e.seq)
          if (events.length === 0) client.violations.push('an empty notification batch was delivered')
          else if (seqs[0]! > client.known + 1) client.violations.push(`a batch started at seq ${seqs[0]} while the client held only up to ${client.known}`)
          if (seqs.some((s, i) => i > 0 && s !== seqs[i - 1]! + 1)) client.violations.push(`a batch was not dense and ordered: ${seqs.join(',')}`)
          if (seqs.length && head < seqs[seqs.length - 1]!) client.violations.push(`a batch ending at ${seqs[seqs.length - 1]} said head ${head}`)
          client.batches.push(events)
          if (seqs.length) client.known = Math.max(client.known, seqs[seqs.length - 1]!)
          wake()
        },
        onStatus(status) {
          client.statuses.push(status.state)
          wake()
        },
      })
      await client.waitFor('status online', () => client.statuses.at(-1) === 'online')
      return client
    }

    const notified = (client: Client) => client.batches.flat().map((e) => e.seq)

    it('answers a pull of an empty log with head 0 and more: false', async () => {
      const a = await open()
      const page = await a.pull(0)
      expect(page).toMatchObject({ type: 'pulled', events: [], head: 0, more: false })
      expect(typeof page.backendId).toBe('string')
    }, timeout)

    it('round-trips pushed events through pull, in order, with their fields intact', async () => {
      const a = await open()
      const first = makeEvents('alice', 3)
      const pushed = await a.transport.push({ storeId, parentSeq: 0, events: first })
      expect(pushed).toMatchObject({ type: 'pushed', firstSeq: 1, head: 3 })
      const second = makeEvents('alice', 2)
      expect(await a.transport.push({ storeId, parentSeq: 3, events: second })).toMatchObject({ type: 'pushed', firstSeq: 4, head: 5 })
      const page = await a.pull(0)
      expect(page).toMatchObject({ type: 'pulled', head: 5, more: false })
      expect(page.events).toEqual([...first, ...second].map((e, i) => ({ ...e, seq: i + 1 })))
      if (pushed.type === 'pushed') expect(page.backendId).toBe(pushed.backendId)
    }, timeout)

    it('answers rejected: behind with the head when parentSeq is not the head, appending nothing', async () => {
      const a = await open()
      await ctx.backend.push(storeId, { parentSeq: 0, events: makeEvents('bob', 2) })
      expect(await a.transport.push({ storeId, parentSeq: 0, events: makeEvents('alice', 1) })).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
      expect(await a.transport.push({ storeId, parentSeq: 7, events: makeEvents('alice', 1) })).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
      expect((await ctx.backend.pull(storeId, 0, 100)).head).toBe(2)
    }, timeout)

    it('answers a retried push as accepted without appending it again', async () => {
      const a = await open()
      const events = makeEvents('alice', 2)
      expect(await a.transport.push({ storeId, parentSeq: 0, events })).toMatchObject({ type: 'pushed', firstSeq: 1, head: 2 })
      expect(await a.transport.push({ storeId, parentSeq: 0, events })).toMatchObject({ type: 'pushed', firstSeq: 1, head: 2 })
      await ctx.backend.push(storeId, { parentSeq: 2, events: makeEvents('bob', 1) })
      expect(await a.transport.push({ storeId, parentSeq: 0, events })).toMatchObject({ type: 'pushed', firstSeq: 1, head: 3 })
      expect((await a.pull(0)).events.map((e) => e.id)).toEqual([...events.map((e) => e.id), expect.stringMatching(/^bob:/)])
    }, timeout)

    it('pages a pull with more: true until the head', async () => {
      const a = await open()
      const events = makeEvents('bob', 5)
      await ctx.backend.push(storeId, { parentSeq: 0, events })
      const pages = [await a.pull(0, 2), await a.pull(2, 2), await a.pull(4, 2)]
      expect(pages.map((p) => p.events.map((e) => e.seq))).toEqual([[1, 2], [3, 4], [5]])
      expect(pages.map((p) => p.more)).toEqual([true, true, false])
      expect(pages.every((p) => p.head === 5)).toBe(true)
    }, timeout)

    it('streams events after a pull reached the head: in seq order, no gaps, from head + 1, also from other clients', async () => {
      const a = await open()
      const b = await open()
      await ctx.backend.push(storeId, { parentSeq: 0, events: makeEvents('carol', 3) })
      await a.pull(0, 2) // more: true, not at the head yet
      expect((await a.pull(2)).more).toBe(false)
      const fromB = makeEvents('bob', 3)
      await b.transport.push({ storeId, parentSeq: 3, events: fromB })
      const direct = makeEvents('carol', 2)
      await ctx.backend.push(storeId, { parentSeq: 6, events: direct })
      const last = makeEvents('bob', 1)
      await b.transport.push({ storeId, parentSeq: 8, events: last })
      await a.waitFor('notification up to seq 9', () => a.known >= 9)
      expect(a.violations).toEqual([])
      expect(notified(a)).toEqual([4, 5, 6, 7, 8, 9])
      expect(a.batches.flat().map((e) => e.id)).toEqual([...fromB, ...direct, ...last].map((e) => e.id))
    }, timeout)

    it('streams more than one page of events without dropping or reordering any', async () => {
      const a = await open()
      expect((await a.pull(0)).more).toBe(false)
      for (let i = 0; i < 3; i++) await ctx.backend.push(storeId, { parentSeq: i * 400, events: makeEvents('bulk', 400) })
      await a.waitFor('notification up to seq 1200', () => a.known >= 1200)
      expect(a.violations).toEqual([])
      expect(notified(a)).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1))
    }, timeout)

    it('keeps storeIds apart', async () => {
      const a = await open()
      const otherStore = `${storeId}-other`
      expect((await a.pull(0)).more).toBe(false)
      await ctx.backend.push(otherStore, { parentSeq: 0, events: makeEvents('other', 2) })
      await ctx.backend.push(storeId, { parentSeq: 0, events: makeEvents('mine', 1) })
      await a.waitFor('notification of seq 1', () => a.known >= 1)
      expect(a.batches.flat().map((e) => e.clientId)).toEqual(['mine'])
      expect((await a.pull(0)).head).toBe(1)
    }, timeout)

    it('surfaces protocol errors as a TransportError with protocolCode, and keeps working', async () => {
      const a = await open()
      const [e1, e2] = makeEvents('alice', 2)
      await a.transport.push({ storeId, parentSeq: 0, events: [e1!] })
      const mixed = await rejection(a.transport.push({ storeId, parentSeq: 1, events: [e1!, e2!] }))
      expect(isTransportError(mixed), String(mixed)).toBe(true)
      expect(mixed).toMatchObject({ protocolCode: 'invalid_message', retryable: false })
      const empty = await rejection(a.transport.push({ storeId, parentSeq: 1, events: [] }))
      expect(empty).toMatchObject({ name: 'TransportError', protocolCode: 'invalid_message' })
      expect((await a.pull(0)).head).toBe(1)
    }, timeout)

    it('close() rejects requests in flight and later ones, and stops reconnecting', async () => {
      const a = await open()
      if (!options.inProcess) {
        const inFlight = a.transport.pull({ storeId, since: 0 })
        const closing = a.transport.close()
        const error = await rejection(inFlight)
        expect(isTransportError(error), String(error)).toBe(true)
        await closing
      } else await a.transport.close()
      expect(isTransportError(await rejection(a.transport.pull({ storeId, since: 0 })))).toBe(true)
      expect(isTransportError(await rejection(a.transport.push({ storeId, parentSeq: 0, events: makeEvents('alice', 1) })))).toBe(true)
      const mark = a.statuses.length
      if (ctx.stopServer && ctx.startServer) {
        await ctx.stopServer()
        await ctx.startServer()
      }
      // a full round trip through a fresh transport gives a reconnecting closed one every chance to show itself
      const c = await open()
      await c.transport.push({ storeId, parentSeq: 0, events: makeEvents('carol', 1) })
      expect((await c.pull(0)).head).toBe(1)
      expect(a.statuses.slice(mark).filter((s) => s !== 'offline')).toEqual([])
    }, timeout)

    it('goes offline when the server drops it, comes back online by itself, and streams again after a new pull', async (test) => {
      if (!ctx.stopServer || !ctx.startServer) return test.skip()
      const a = await open()
      expect((await a.pull(0)).more).toBe(false)
      await ctx.backend.push(storeId, { parentSeq: 0, events: makeEvents('bob', 1) })
      await a.waitFor('notification of seq 1', () => a.known >= 1)
      const mark = a.statuses.length
      await ctx.stopServer()
      await a.waitFor('status offline after the server stopped', () => a.statuses.slice(mark).includes('offline'))
      await ctx.backend.push(storeId, { parentSeq: 1, events: makeEvents('bob', 2) })
      await ctx.startServer()
      const offlineAt = mark + a.statuses.slice(mark).indexOf('offline')
      await a.waitFor('status online after the server came back', () => a.statuses.at(-1) === 'online' && a.statuses.length - 1 > offlineAt)
      const page = await a.pull(1)
      expect(page.events.map((e) => e.seq)).toEqual([2, 3])
      expect(page.more).toBe(false)
      await ctx.backend.push(storeId, { parentSeq: 3, events: makeEvents('bob', 1) })
      await a.waitFor('notification of seq 4 after reconnecting', () => a.known >= 4)
      expect(a.violations).toEqual([])
      expect(notified(a)).toEqual([1, 4])
    }, timeout)
  })
}
