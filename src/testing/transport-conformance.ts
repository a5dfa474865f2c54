import * as vitest from 'vitest'
import { expect } from 'vitest'
import { memoryBackend } from '../backends/memory.js'
import type { ConfirmedEvent, PendingEvent, PullRequest, PullResponse, PushRequest } from '../protocol.js'
import { defineEvent, defineSchema } from '../schema.js'
import { sql } from '../sql.js'
import { createStore } from '../store.js'
import type { SyncBackend, Transport, TransportHandlers, TransportStatus } from '../transport.js'

/** What the kit hands `setup` for one case. */
export interface TransportKit {
  /**
   * The backend to serve: give it to your server (`createSyncServer`,
   * `createServerSession`, …). The kit also pushes to it directly, as another
   * client would, and holds some of its answers back to see what the
   * transport does with a request in flight. The kit closes it.
   */
  backend: SyncBackend
}

/** What the kit asks of every transport it makes. */
export interface TransportKitOptions {
  /** Reject a request with a retryable TransportError when no answer came within this many ms. Transports must honour it: the kit tests the timeout with a short one. */
  requestTimeoutMs: number
}

/**
 * What `setup` gives the kit for one case. `setup` runs before every case and
 * `teardown` after it, so each case gets a fresh server.
 * @example
 * runTransportConformance('websocketTransport', async ({ backend }) => {
 *   let server = await createSyncServer({ backend, port: 0, authenticate: ({ token }) => token !== 'refused' })
 *   const { port, url } = server
 *   return {
 *     transport: ({ requestTimeoutMs }) => websocketTransport({ url, WebSocket, requestTimeoutMs }),
 *     refusedTransport: ({ requestTimeoutMs }) => websocketTransport({ url, WebSocket, requestTimeoutMs, token: 'refused' }),
 *     stopServer: () => server.close(),
 *     startServer: async () => { server = await createSyncServer({ backend, port }) },
 *     teardown: () => server.close(),
 *   }
 * })
 */
export interface TransportConformanceSetup {
  /** Makes a new, not yet connected transport to the kit's backend; the kit calls it once or more per case and closes what it made. */
  transport(options: TransportKitOptions): Transport
  /** Makes a transport to the same server whose credentials the server refuses (e.g. a wrong token). Without it, the `unauthorized` case is skipped. */
  refusedTransport?(options: TransportKitOptions): Transport
  /** Drops every connection server-side and refuses new ones until `startServer` (e.g. `server.close()`). Without both, the cases of a server going away are skipped. */
  stopServer?: () => Promise<void>
  /** Serves again at the same address over the same backend. */
  startServer?: () => Promise<void>
  /** Releases what setup made (the server); runs after the kit closed its transports. */
  teardown(): Promise<void>
}

/** Makes the setup of one case. */
export type MakeTransportSetup = (kit: TransportKit) => TransportConformanceSetup | Promise<TransportConformanceSetup>

/** Options of `runTransportConformance`. */
export interface TransportConformanceOptions {
  /** The transport answers without I/O (like localTransport), so no request can be in flight when `close()` runs; that check is skipped. */
  inProcess?: boolean
  /** How long to wait for an expected answer, notification or status before failing with a message. Default 10_000 ms. */
  waitMs?: number
  /** Per-case timeout of `runTransportConformance`. Default 3 × waitMs + 10_000 ms. */
  testTimeoutMs?: number
}

/** One case of the suite, runnable on its own (see `transportConformanceCases`). */
export interface TransportConformanceCase {
  name: string
  /** Setup hooks the case needs; without them it is skipped. */
  needs: readonly ('stopServer/startServer' | 'refusedTransport')[]
  /** Runs the case, setup and teardown included; rejects when the transport fails it, resolves `skipped` with the reason when the setup lacks a hook it needs. */
  run(): Promise<{ skipped?: string }>
}

interface Client {
  transport: Transport
  storeId: string
  statuses: TransportStatus[]
  batches: ConfirmedEvent[][]
  /** Problems seen in notifications: out of order, past what the client knows, past the head, not in the backend. */
  violations: string[]
  /** Highest seq the client holds contiguously, from its pulls and the notifications. */
  known: number
  pull(since: number, limit?: number): Promise<PullResponse>
  push(parentSeq: number, events: PendingEvent[], anyHead?: boolean): ReturnType<Transport['push']>
  waitFor(what: string, done: () => boolean): Promise<void>
}

/** A backend call the kit holds back until `release()`. */
interface Hold {
  /** Resolves once the held call reached the backend. */
  arrived: Promise<void>
  release(): void
}

/** The kit gave up waiting: its message names what did not happen. */
class KitTimeout extends Error {}

let counter = 0
const runId = Math.random().toString(36).slice(2, 8)

function makeEvents(clientId: string, n: number): PendingEvent[] {
  return Array.from({ length: n }, () => {
    const i = ++counter
    return {
      id: `${clientId}:${i}`,
      name: 'noted',
      args: { i, text: `event ${i}`, nested: [i, { ok: true }] },
      clientId,
      sessionId: 'conformance',
      createdAt: 1_700_000_000_000 + i,
    }
  })
}

const isTransportError = (error: unknown): error is Error & { retryable: boolean; code: string; protocolCode?: string } =>
  error instanceof Error && error.name === 'TransportError'

const describeRequest = (what: 'pull' | 'push', request: PullRequest | PushRequest) =>
  what === 'pull'
    ? `pull({ storeId: "${request.storeId}", since: ${(request as PullRequest).since}${(request as PullRequest).limit === undefined ? '' : `, limit: ${(request as PullRequest).limit}`} })`
    : `push({ storeId: "${request.storeId}", parentSeq: ${(request as PushRequest).parentSeq}, events: [${(request as PushRequest).events.map((e) => e.id).join(', ')}] })`

/**
 * A backend that passes everything to `inner` except the calls `hold` asked
 * for, which wait until released; the transport under test sees a server whose
 * backend is slow.
 */
function holdingBackend(inner: SyncBackend) {
  const holds: { op: 'pull' | 'push'; storeId: string; arrive(): void; released: Promise<void>; release(): void }[] = []
  const gate = async (op: 'pull' | 'push', storeId: string) => {
    const i = holds.findIndex((h) => h.op === op && h.storeId === storeId)
    if (i < 0) return
    const [h] = holds.splice(i, 1)
    h!.arrive()
    await h!.released
  }
  const released: (() => void)[] = []
  const backend: SyncBackend = {
    async pull(storeId, since, limit) {
      await gate('pull', storeId)
      return inner.pull(storeId, since, limit)
    },
    async push(storeId, request) {
      await gate('push', storeId)
      return inner.push(storeId, request)
    },
    subscribe: (storeId, onHead) => inner.subscribe(storeId, onHead),
    close: () => inner.close(),
  }
  return {
    backend,
    /** Holds the next `op` of storeId at the backend. */
    hold(op: 'pull' | 'push', storeId: string): Hold {
      let arrive!: () => void
      let release!: () => void
      const arrived = new Promise<void>((r) => (arrive = r))
      const h = { op, storeId, arrive, released: new Promise<void>((r) => (release = r)), release: () => release() }
      holds.push(h)
      released.push(h.release)
      return { arrived, release: h.release }
    },
    releaseAll: () => {
      for (const r of released) r()
    },
  }
}

const storeSchema = defineSchema({
  tables: { notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY)` },
  events: { noted: defineEvent<{ i: number }>({ materialize: ({ i }) => sql`INSERT OR IGNORE INTO notes (id) VALUES (${String(i)})` }) },
})

/**
 * The suite's cases, to run one at a time outside `runTransportConformance`
 * (e.g. to assert that a deliberately broken transport fails one). Every
 * failure names the request or the wait that went wrong.
 * @example await transportConformanceCases('mine', setup).find((c) => c.name.startsWith('connect() settles'))!.run()
 */
export function transportConformanceCases(name: string, setup: MakeTransportSetup, options: TransportConformanceOptions = {}): TransportConformanceCase[] {
  const waitMs = options.waitMs ?? 10_000
  // long enough that only a dropped connection, not the timeout, can reject a request in the drop case
  const requestTimeoutMs = 3 * waitMs
  const cases: TransportConformanceCase[] = []

  /** Rejects with `message` when `promise` does not settle within waitMs. */
  const within = <T>(promise: Promise<T>, message: string): Promise<T> => {
    let timer: ReturnType<typeof setTimeout> | undefined
    const late = new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new KitTimeout(`${name}: ${message}`)), waitMs)))
    return Promise.race([promise, late]).finally(() => clearTimeout(timer))
  }

  /** Resolves with what `promise` rejected with; fails, naming the request, when it resolves or hangs. */
  const rejection = async (promise: Promise<unknown>, request: string, why: string): Promise<unknown> => {
    let outcome: { answer: unknown } | { error: unknown }
    try {
      outcome = { answer: await within(promise, `${request} neither answered nor rejected within ${waitMs} ms; ${why}`) }
    } catch (error) {
      if (error instanceof KitTimeout) throw error
      return error
    }
    throw new Error(`${name}: ${request} resolved ${JSON.stringify(outcome.answer)}, but it must reject with a TransportError: ${why}`)
  }

  const it = (caseName: string, fn: (t: CaseContext) => Promise<void>, needs: TransportConformanceCase['needs'] = []) => {
    cases.push({ name: caseName, needs, run: () => runCase(fn, needs) })
  }

  interface CaseContext {
    setup: TransportConformanceSetup
    /** The backend without holds, for the kit's own reads and writes. */
    backend: SyncBackend
    hold: ReturnType<typeof holdingBackend>['hold']
    storeId: string
    open(forStore?: string, transportOptions?: Partial<TransportKitOptions>): Promise<Client>
    /** Makes a transport and connects it, without waiting for online. */
    attach(forStore?: string, transportOptions?: Partial<TransportKitOptions>): Client & { connected: Promise<void> }
    /** The same with `refusedTransport`. */
    attachRefused(): Client & { connected: Promise<void> }
  }

  async function runCase(fn: (t: CaseContext) => Promise<void>, needs: TransportConformanceCase['needs']): Promise<{ skipped?: string }> {
    const inner = memoryBackend()
    const holding = holdingBackend(inner)
    const ctx = await setup({ backend: holding.backend })
    const missing = needs.filter((hook) => (hook === 'refusedTransport' ? !ctx.refusedTransport : !ctx.stopServer || !ctx.startServer))
    if (missing.length > 0) {
      await ctx.teardown()
      await inner.close()
      const why = missing.includes('refusedTransport')
        ? 'pass refusedTransport (credentials the server refuses) to check how a refusal is reported'
        : 'pass both to check what the transport does when the server goes away'
      return { skipped: `the setup has no ${missing.join(' and no ')}: ${why}` }
    }
    const made: Transport[] = []
    const storeId = `conformance-${runId}-${++counter}`

    const attach = (forStore = storeId, transportOptions: Partial<TransportKitOptions> = {}, make = ctx.transport.bind(ctx)) => {
      const transport = make({ requestTimeoutMs, ...transportOptions })
      made.push(transport)
      const waiters = new Set<() => void>()
      const wake = () => {
        for (const w of waiters) w()
      }
      const client: Client = {
        transport,
        storeId: forStore,
        statuses: [],
        batches: [],
        violations: [],
        known: 0,
        async pull(since, limit) {
          const request: PullRequest = limit === undefined ? { storeId: forStore, since } : { storeId: forStore, since, limit }
          const page = await within(
            transport.pull(request),
            `${describeRequest('pull', request)} had no answer within ${waitMs} ms (statuses: ${client.statuses.map((s) => s.state).join(' > ')})`,
          )
          client.known = Math.max(client.known, since + page.events.length)
          return page
        },
        push(parentSeq, events, anyHead) {
          const request: PushRequest = anyHead === undefined ? { storeId: forStore, parentSeq, events } : { storeId: forStore, parentSeq, events, anyHead }
          return within(
            transport.push(request),
            `${describeRequest('push', request)} had no answer within ${waitMs} ms (statuses: ${client.statuses.map((s) => s.state).join(' > ')})`,
          )
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
              reject(
                new Error(
                  `${name}: no ${what} within ${waitMs} ms (storeId "${forStore}"; statuses: ${client.statuses.map((s) => s.state).join(' > ') || 'none'}; known seq ${client.known}; notified seqs: ${
                    client.batches
                      .flat()
                      .map((e) => e.seq)
                      .join(',') || 'none'
                  })`,
                ),
              )
            }, waitMs)
            waiters.add(check)
            check()
          })
        },
      }
      const connected = within(
        transport.connect({
          storeId: forStore,
          onEvents(events, head) {
            const seqs = events.map((e) => e.seq)
            if (events.length === 0) client.violations.push('an empty notification batch was delivered')
            else if (seqs[0]! > client.known + 1) client.violations.push(`a batch started at seq ${seqs[0]} while the client held only up to ${client.known}`)
            if (seqs.some((s, i) => i > 0 && s !== seqs[i - 1]! + 1)) client.violations.push(`a batch was not dense and ordered: ${seqs.join(',')}`)
            if (seqs.length && head < seqs[seqs.length - 1]!) client.violations.push(`a batch ending at ${seqs[seqs.length - 1]} said head ${head}`)
            if (events.length) {
              // notified events must already be in the backend, at those seqs
              const ids = events.map((e) => `${e.seq}=${e.id}`)
              void inner.pull(forStore, seqs[0]! - 1, events.length).then((page) => {
                const stored = page.events.map((e) => `${e.seq}=${e.id}`)
                if (stored.join() !== ids.join())
                  client.violations.push(
                    `notified events [${ids.join(', ')}] of "${forStore}" were not in the backend when notified (it holds [${stored.join(', ')}] there): notify only events the backend accepted`,
                  )
              })
            }
            client.batches.push(events)
            if (seqs.length) client.known = Math.max(client.known, seqs[seqs.length - 1]!)
            wake()
          },
          onStatus(status) {
            client.statuses.push(status)
            wake()
          },
        }),
        `connect({ storeId: "${forStore}" }) did not settle within ${waitMs} ms: it must resolve once the first attempt settled (online or not) and keep reconnecting by itself, or createStore waits forever`,
      )
      return Object.assign(client, { connected })
    }

    const t: CaseContext = {
      setup: ctx,
      backend: inner,
      hold: holding.hold,
      storeId,
      attach: (forStore, transportOptions) => attach(forStore, transportOptions),
      attachRefused: () => attach(storeId, {}, ctx.refusedTransport!.bind(ctx)),
      async open(forStore, transportOptions) {
        const client = attach(forStore, transportOptions)
        await client.connected
        await client.waitFor('status online after connect()', () => client.statuses.at(-1)?.state === 'online')
        return client
      },
    }
    try {
      await fn(t)
      return {}
    } finally {
      holding.releaseAll()
      await Promise.allSettled(made.map((m) => m.close()))
      await ctx.teardown()
      await inner.close()
    }
  }

  const notified = (client: Client) => client.batches.flat().map((e) => e.seq)
  /** Fails with every problem seen in the notifications of `client`. */
  const noViolations = (client: Client, context = 'the notifications') => {
    if (client.violations.length > 0) throw new Error(`${name}: ${context} of "${client.storeId}" broke the protocol: ${client.violations.join('; ')}`)
  }

  it('answers a pull of an empty log with head 0 and more: false', async (t) => {
    const a = await t.open()
    const page = await a.pull(0)
    expect(page).toMatchObject({ type: 'pulled', events: [], head: 0, more: false })
    expect(typeof page.backendId).toBe('string')
  })

  it('round-trips pushed events through pull, in order, with their fields intact', async (t) => {
    const a = await t.open()
    const first = makeEvents('alice', 3)
    const pushed = await a.push(0, first)
    expect(pushed).toMatchObject({ type: 'pushed', firstSeq: 1, head: 3 })
    const second = makeEvents('alice', 2)
    expect(await a.push(3, second)).toMatchObject({ type: 'pushed', firstSeq: 4, head: 5 })
    const page = await a.pull(0)
    expect(page).toMatchObject({ type: 'pulled', head: 5, more: false })
    expect(page.events).toEqual([...first, ...second].map((e, i) => ({ ...e, seq: i + 1 })))
    if (pushed.type === 'pushed') expect(page.backendId).toBe(pushed.backendId)
  })

  it('answers rejected: behind with the head when parentSeq is not the head, appending nothing', async (t) => {
    const a = await t.open()
    await t.backend.push(t.storeId, { parentSeq: 0, events: makeEvents('bob', 2) })
    expect(await a.push(0, makeEvents('alice', 1))).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
    expect(await a.push(7, makeEvents('alice', 1))).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
    expect((await t.backend.pull(t.storeId, 0, 100)).head).toBe(2)
  })

  it('carries anyHead: such a push on a parentSeq behind the head is appended after the head', async (t) => {
    const a = await t.open()
    await t.backend.push(t.storeId, { parentSeq: 0, events: makeEvents('bob', 2) })
    const events = makeEvents('alice', 2)
    expect(await a.push(1, events, true)).toMatchObject({ type: 'pushed', firstSeq: 3, head: 4 })
    expect((await t.backend.pull(t.storeId, 0, 100)).events.slice(2).map((e) => e.id)).toEqual(events.map((e) => e.id))
  })

  it('answers a retried push as accepted without appending it again', async (t) => {
    const a = await t.open()
    const events = makeEvents('alice', 2)
    expect(await a.push(0, events)).toMatchObject({ type: 'pushed', firstSeq: 1, head: 2 })
    expect(await a.push(0, events)).toMatchObject({ type: 'pushed', firstSeq: 1, head: 2 })
    await t.backend.push(t.storeId, { parentSeq: 2, events: makeEvents('bob', 1) })
    expect(await a.push(0, events)).toMatchObject({ type: 'pushed', firstSeq: 1, head: 3 })
    expect((await a.pull(0)).events.map((e) => e.id)).toEqual([...events.map((e) => e.id), expect.stringMatching(/^bob:/)])
  })

  it('pages a pull with more: true until the head', async (t) => {
    const a = await t.open()
    await t.backend.push(t.storeId, { parentSeq: 0, events: makeEvents('bob', 5) })
    const pages = [await a.pull(0, 2), await a.pull(2, 2), await a.pull(4, 2)]
    expect(pages.map((p) => p.events.map((e) => e.seq))).toEqual([[1, 2], [3, 4], [5]])
    expect(pages.map((p) => p.more)).toEqual([true, true, false])
    expect(pages.every((p) => p.head === 5)).toBe(true)
  })

  it('streams events after a pull reached the head: in seq order, no gaps, from head + 1, also from other clients', async (t) => {
    const a = await t.open()
    const b = await t.open()
    await t.backend.push(t.storeId, { parentSeq: 0, events: makeEvents('carol', 3) })
    await a.pull(0, 2) // more: true, not at the head yet
    expect((await a.pull(2)).more).toBe(false)
    const fromB = makeEvents('bob', 3)
    await b.push(3, fromB)
    const direct = makeEvents('carol', 2)
    await t.backend.push(t.storeId, { parentSeq: 6, events: direct })
    const last = makeEvents('bob', 1)
    await b.push(8, last)
    await a.waitFor('notification up to seq 9', () => a.known >= 9)
    noViolations(a)
    expect(notified(a)).toEqual([4, 5, 6, 7, 8, 9])
    expect(a.batches.flat().map((e) => e.id)).toEqual([...fromB, ...direct, ...last].map((e) => e.id))
  })

  it('streams more than one page of events without dropping or reordering any', async (t) => {
    const a = await t.open()
    expect((await a.pull(0)).more).toBe(false)
    for (let i = 0; i < 3; i++) await t.backend.push(t.storeId, { parentSeq: i * 400, events: makeEvents('bulk', 400) })
    await a.waitFor('notification up to seq 1200', () => a.known >= 1200)
    noViolations(a)
    expect(notified(a)).toEqual(Array.from({ length: 1200 }, (_, i) => i + 1))
  })

  it('notifies only events the backend stored: none of a rejected or refused push, each one pullable when notified', async (t) => {
    const a = await t.open()
    const b = await t.open()
    await b.push(0, makeEvents('bob', 2))
    expect((await a.pull(0)).more).toBe(false)
    const behind = makeEvents('mallory', 2)
    expect(await b.push(0, behind), `${describeRequest('push', { storeId: t.storeId, parentSeq: 0, events: behind })} at head 2`).toMatchObject({
      type: 'rejected',
      head: 2,
    })
    const [dup] = makeEvents('mallory', 1)
    await rejection(
      b.push(2, [dup!, dup!]),
      describeRequest('push', { storeId: t.storeId, parentSeq: 2, events: [dup!, dup!] }),
      'a batch with an id twice is refused invalid_message',
    )
    const marker = makeEvents('bob', 1)
    await b.push(2, marker)
    await a.waitFor('notification of seq 3 (the push after a rejected and a refused one)', () => a.known >= 3)
    // the pullability checks started at each notification; let them finish
    await new Promise((resolve) => setTimeout(resolve, 0))
    await t.backend.pull(t.storeId, 0, 1)
    noViolations(a, 'after a rejected and a refused push, the notifications')
    expect(
      a.batches.flat().map((e) => `${e.seq}=${e.id}`),
      `what "${t.storeId}" was notified after a rejected push of [${behind.map((e) => e.id).join(', ')}] and a refused one of [${dup!.id}, ${dup!.id}]`,
    ).toEqual([`3=${marker[0]!.id}`])
  })

  it('keeps two storeIds apart within one process: pushes, pulls and notifications', async (t) => {
    const s1 = t.storeId
    const s2 = `${t.storeId}-other`
    const a = await t.open(s1)
    const b = await t.open(s2)
    expect((await a.pull(0)).more).toBe(false)
    expect((await b.pull(0)).more).toBe(false)
    const mine = makeEvents('one', 2)
    const theirs = makeEvents('two', 3)
    await a.push(0, mine)
    await b.push(0, theirs)
    await t.backend.push(s2, { parentSeq: 3, events: makeEvents('two-direct', 1) })
    await a.waitFor(`notification of seq 2 of "${s1}"`, () => a.known >= 2)
    await b.waitFor(`notification of seq 4 of "${s2}"`, () => b.known >= 4)
    // what a client of s1 is told must come from s1 only, and the same for s2
    const idsOf = async (s: string) => (await t.backend.pull(s, 0, 100)).events.map((e) => e.id)
    expect(await idsOf(s1), `the backend log of "${s1}" after push({ storeId: "${s1}" }) and push({ storeId: "${s2}" }) through two transports`).toEqual(
      mine.map((e) => e.id),
    )
    expect((await idsOf(s2)).slice(0, 3), `the backend log of "${s2}"`).toEqual(theirs.map((e) => e.id))
    expect(
      a.batches.flat().map((e) => e.id),
      `notifications of the transport connected to "${s1}"`,
    ).toEqual(mine.map((e) => e.id))
    expect(
      b.batches.flat().map((e) => e.clientId),
      `notifications of the transport connected to "${s2}"`,
    ).toEqual(['two', 'two', 'two', 'two-direct'])
    expect(
      (await a.pull(0)).events.map((e) => e.id),
      `pull({ storeId: "${s1}", since: 0 })`,
    ).toEqual(mine.map((e) => e.id))
    noViolations(a)
    noViolations(b)
  })

  it('surfaces protocol errors as a TransportError with protocolCode, and keeps working', async (t) => {
    const a = await t.open()
    const [e1, e2] = makeEvents('alice', 2)
    await a.push(0, [e1!])
    const mixedRequest = describeRequest('push', { storeId: t.storeId, parentSeq: 1, events: [e1!, e2!] })
    const mixed = await rejection(a.push(1, [e1!, e2!]), mixedRequest, 'a stored id among new ones is refused invalid_message')
    expect(isTransportError(mixed), `${mixedRequest} rejected with ${String(mixed)}`).toBe(true)
    expect(mixed).toMatchObject({ protocolCode: 'invalid_message', retryable: false })
    const empty = await rejection(
      a.push(1, []),
      describeRequest('push', { storeId: t.storeId, parentSeq: 1, events: [] }),
      'an empty push is refused invalid_message',
    )
    expect(empty).toMatchObject({ name: 'TransportError', protocolCode: 'invalid_message' })
    expect((await a.pull(0)).head).toBe(1)
  })

  it('rejects a request without an answer once its requestTimeoutMs passed, retryably, and keeps working', async (t) => {
    const timeoutMs = Math.max(50, Math.floor(waitMs / 20))
    const a = await t.open(t.storeId, { requestTimeoutMs: timeoutMs })
    const held = t.hold('pull', t.storeId)
    const request = describeRequest('pull', { storeId: t.storeId, since: 0 })
    const pending = a.transport.pull({ storeId: t.storeId, since: 0 })
    await within(held.arrived, `${request} never reached the backend`)
    const error = await rejection(
      pending,
      request,
      `the backend holds the answer back, and the transport was made with requestTimeoutMs: ${timeoutMs} (honour it: a request must not wait forever)`,
    )
    expect(isTransportError(error), `${request} rejected with ${String(error)}`).toBe(true)
    expect((error as { retryable: boolean }).retryable, `${request} timed out: its TransportError must be retryable`).toBe(true)
    held.release()
    await a.waitFor('status online again after a timed-out request', () => a.statuses.at(-1)?.state === 'online')
    expect((await a.pull(0)).head, 'a pull after the timed-out one').toBe(0)
  })

  it(
    'rejects a request in flight when the connection drops, without waiting for its timeout',
    async (t) => {
      const a = await t.open()
      const held = t.hold('pull', t.storeId)
      const request = describeRequest('pull', { storeId: t.storeId, since: 0 })
      const pending = a.transport.pull({ storeId: t.storeId, since: 0 })
      await within(held.arrived, `${request} never reached the backend`)
      const stopping = t.setup.stopServer!()
      const error = await rejection(
        pending,
        request,
        `the server went away while the request was in flight (the transport was made with requestTimeoutMs: ${requestTimeoutMs}, so only the dropped connection can reject it in time)`,
      )
      expect(isTransportError(error), `${request} rejected with ${String(error)}`).toBe(true)
      expect((error as { retryable: boolean }).retryable, `${request} lost with its connection: its TransportError must be retryable`).toBe(true)
      held.release()
      await stopping
      await t.setup.startServer!()
      await a.waitFor('status online after the server came back', () => a.statuses.at(-1)?.state === 'online' && a.statuses.some((s) => s.state === 'offline'))
      expect((await a.pull(0)).head).toBe(0)
    },
    ['stopServer/startServer'],
  )

  it(
    'connect() settles while the server is down, reports offline, and comes online by itself once it is up',
    async (t) => {
      await t.setup.stopServer!()
      const a = t.attach()
      await a.connected
      await a.waitFor('status offline (with the error) while the server is down', () => a.statuses.some((s) => s.state === 'offline'))
      expect(
        a.statuses.some((s) => s.state === 'online'),
        'a status online while the server is down',
      ).toBe(false)
      await t.setup.startServer!()
      await a.waitFor('status online after the server came up', () => a.statuses.at(-1)?.state === 'online')
      expect((await a.pull(0)).head).toBe(0)
    },
    ['stopServer/startServer'],
  )

  it(
    'rejects pulls and pushes while offline with a retryable TransportError, never a made-up answer',
    async (t) => {
      const a = await t.open()
      await a.push(0, makeEvents('alice', 1))
      await t.setup.stopServer!()
      for (const [what, request] of [
        ['pull', { storeId: t.storeId, since: 0 }],
        ['pull', { storeId: t.storeId, since: 1 }],
        ['push', { storeId: t.storeId, parentSeq: 1, events: makeEvents('alice', 1) }],
      ] as const) {
        const described = describeRequest(what, request)
        const answer = what === 'pull' ? a.transport.pull(request as PullRequest) : a.transport.push(request as PushRequest)
        const error = await rejection(
          answer,
          `${described} while offline`,
          'the server is down, so there is no answer to give (a made-up empty page tells the engine it is in sync)',
        )
        expect(isTransportError(error), `${described} while offline rejected with ${String(error)}`).toBe(true)
        expect((error as { retryable: boolean }).retryable, `${described} while offline: its TransportError must be retryable`).toBe(true)
      }
      await a.waitFor('status offline after requests failed with the server down', () => a.statuses.at(-1)?.state === 'offline')
      await t.setup.startServer!()
      await a.waitFor('status online after the server came back', () => a.statuses.at(-1)?.state === 'online')
      expect((await a.pull(0)).head).toBe(1)
    },
    ['stopServer/startServer'],
  )

  it(
    'reports a refused token as an error with code unauthorized, and a store shows sync state error',
    async (t) => {
      const refused = t.attachRefused()
      await refused.connected
      const codeOf = (error: unknown) => (error as { code?: unknown } | undefined)?.code
      const fromStatus = () => refused.statuses.some((s) => codeOf(s.error) === 'unauthorized')
      let fromRequest: unknown
      if (!fromStatus()) {
        // transports that report refusals per request (HTTP) say it to the first request
        await refused.waitFor('status online or an error', () => refused.statuses.some((s) => s.state === 'online' || s.error !== undefined))
        if (!fromStatus())
          fromRequest = await refused.transport.pull({ storeId: t.storeId, since: 0 }).then(
            (page) => ({ resolved: page }),
            (error: unknown) => error,
          )
      }
      const seen = [
        ...refused.statuses.map((s) => `${s.state}${s.error ? ` (${codeOf(s.error)}: ${s.error.message})` : ''}`),
        ...(fromRequest === undefined ? [] : [`pull: ${codeOf(fromRequest) ?? JSON.stringify(fromRequest)}`]),
      ]
      expect(
        fromStatus() || codeOf(fromRequest) === 'unauthorized',
        `a refused token must surface as a TransportError with code 'unauthorized' (in a status or as the rejection of a request); saw: ${seen.join(' > ')}`,
      ).toBe(true)
      const store = await createStore({
        schema: storeSchema,
        storeId: t.storeId,
        transport: t.setup.refusedTransport!({ requestTimeoutMs }),
        dev: false,
        sync: { minBackoffMs: 10, maxBackoffMs: 100 },
      })
      try {
        const states: string[] = []
        await within(
          new Promise<void>((resolve) => {
            const stop = store.sync.status.subscribe((status) => {
              states.push(`${status.state}${status.error ? ` (${codeOf(status.error)})` : ''}`)
              if (status.state === 'error' && codeOf(status.error) === 'unauthorized') {
                resolve()
                queueMicrotask(() => stop())
              }
            })
          }),
          `a store on the refused transport never showed sync state 'error' with code 'unauthorized' (states: ${states.join(' > ')})`,
        )
      } finally {
        await store.close()
      }
    },
    ['refusedTransport'],
  )

  it('close() rejects requests in flight and later ones, and stops reconnecting; connect() again rejects, before and after', async (t) => {
    const a = await t.open()
    const idle: TransportHandlers = { storeId: t.storeId, onEvents() {}, onStatus() {} }
    // one transport serves one store: a second connect() is refused, and the first connection keeps working
    const twice = await rejection(a.transport.connect(idle), 'a second connect() of a connected transport', 'one transport serves one store')
    expect(isTransportError(twice) && twice.retryable === false, `a second connect(): ${String(twice)}`).toBe(true)
    expect((await a.pull(0)).head, 'a pull after the refused second connect()').toBe(0)
    if (!options.inProcess) {
      const inFlight = a.transport.pull({ storeId: t.storeId, since: 0 })
      const closing = a.transport.close()
      const error = await rejection(
        inFlight,
        `${describeRequest('pull', { storeId: t.storeId, since: 0 })} sent right before close()`,
        'close() rejects what is in flight',
      )
      expect(isTransportError(error), String(error)).toBe(true)
      await within(closing, `close() did not settle within ${waitMs} ms`)
    } else await within(a.transport.close(), `close() did not settle within ${waitMs} ms`)
    const afterPull = await rejection(
      a.transport.pull({ storeId: t.storeId, since: 0 }),
      `${describeRequest('pull', { storeId: t.storeId, since: 0 })} after close()`,
      'a closed transport answers nothing',
    )
    expect(isTransportError(afterPull)).toBe(true)
    const events = makeEvents('alice', 1)
    const afterPush = await rejection(
      a.transport.push({ storeId: t.storeId, parentSeq: 0, events }),
      `${describeRequest('push', { storeId: t.storeId, parentSeq: 0, events })} after close()`,
      'a closed transport sends nothing',
    )
    expect(isTransportError(afterPush)).toBe(true)
    const reconnect = await rejection(a.transport.connect(idle), 'connect() after close()', 'a closed transport stays closed')
    expect(isTransportError(reconnect) && reconnect.retryable === false, `connect() after close(): ${String(reconnect)}`).toBe(true)
    const mark = a.statuses.length
    if (t.setup.stopServer && t.setup.startServer) {
      await t.setup.stopServer()
      await t.setup.startServer()
    }
    // a full round trip through a fresh transport gives a reconnecting closed one every chance to show itself
    const c = await t.open()
    await c.push(0, makeEvents('carol', 1))
    expect((await c.pull(0)).head).toBe(1)
    expect(
      a.statuses
        .slice(mark)
        .map((s) => s.state)
        .filter((s) => s !== 'offline'),
      'statuses of a closed transport',
    ).toEqual([])
  })

  it(
    'goes offline when the server drops it, comes back online by itself, and streams again after a new pull',
    async (t) => {
      const a = await t.open()
      expect((await a.pull(0)).more).toBe(false)
      await t.backend.push(t.storeId, { parentSeq: 0, events: makeEvents('bob', 1) })
      await a.waitFor('notification of seq 1', () => a.known >= 1)
      const mark = a.statuses.length
      await t.setup.stopServer!()
      await a.waitFor('status offline after the server stopped', () => a.statuses.slice(mark).some((s) => s.state === 'offline'))
      await t.backend.push(t.storeId, { parentSeq: 1, events: makeEvents('bob', 2) })
      await t.setup.startServer!()
      const offlineAt = mark + a.statuses.slice(mark).findIndex((s) => s.state === 'offline')
      await a.waitFor('status online after the server came back', () => a.statuses.at(-1)?.state === 'online' && a.statuses.length - 1 > offlineAt)
      const page = await a.pull(1)
      expect(page.events.map((e) => e.seq)).toEqual([2, 3])
      expect(page.more).toBe(false)
      await t.backend.push(t.storeId, { parentSeq: 3, events: makeEvents('bob', 1) })
      await a.waitFor('notification of seq 4 after reconnecting', () => a.known >= 4)
      noViolations(a)
      expect(notified(a)).toEqual([1, 4])
    },
    ['stopServer/startServer'],
  )

  return cases
}

/**
 * Registers the transport acceptance suite (vitest `describe`/`it`) for a
 * transport implementation: request/answer shapes, idempotent retries,
 * paging, live notifications in seq order without gaps and only of stored
 * events, storeIds kept apart, request timeouts, requests rejected when the
 * connection drops or while offline, connect() settling with the server down,
 * reconnect, refused tokens, close and protocol errors. Call it at the top
 * level of a test file; `setup` serves the kit's backend.
 * @example runTransportConformance('websocketTransport', async ({ backend }) => { ... })
 */
export function runTransportConformance(name: string, setup: MakeTransportSetup, options: TransportConformanceOptions = {}): void {
  const timeout = options.testTimeoutMs ?? 3 * (options.waitMs ?? 10_000) + 10_000
  const cases = transportConformanceCases(name, setup, options)
  vitest.describe(`${name} (transport conformance)`, () => {
    for (const c of cases) {
      vitest.it(
        c.name,
        async (context) => {
          const { skipped } = await c.run()
          if (skipped) context.skip(skipped)
        },
        timeout,
      )
    }
  })
}
