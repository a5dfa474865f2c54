/**
 * The acceptance suite every `SyncBackend` passes: one case per rule of
 * PROTOCOL.md ("Rules the backend keeps" and "Backend contract"), named after
 * the rule it checks. `runBackendConformance` registers the cases as vitest
 * tests; `backendConformanceCases` hands them out to run one by one (a kit
 * test uses it to show a broken backend failing a case).
 */
import * as vitest from 'vitest'
import { expect } from 'vitest'
import { type ConfirmedEvent, type JsonValue, MAX_PULL_LIMIT, type PendingEvent, type PullResponse, type PushResponse } from '../protocol.js'
import type { SyncBackend } from '../transport.js'

/** Makes an empty backend for one case (e.g. over a fresh temporary directory or database schema). */
export type MakeBackend = () => SyncBackend | Promise<SyncBackend>

/** Options of `runBackendConformance` and `backendConformanceCases`. */
export interface BackendConformanceOptions {
  /**
   * For durable backends: gets a backend the suite has just closed and opens a
   * fresh one over the same data. When given, the suite also checks that events,
   * the id index and `backendId` survive a close and reopen.
   */
  reopen?: (closed: SyncBackend) => Promise<SyncBackend>
  /**
   * For durable backends: gets a backend the suite abandons without `close()`
   * right after an answer (as if its process died) and opens a fresh one over
   * the same data. The old instance is never used or closed by the suite again:
   * release what it holds without flushing anything (end its pool, drop its
   * handles). When given, the suite checks that every event answered `pushed`,
   * every head told to a subscriber, and `backendId` survive the crash, which
   * fails a backend that acknowledges before its data is durable.
   */
  crash?: (abandoned: SyncBackend) => Promise<SyncBackend>
}

/** What a case gets to open backends: `backend()` a fresh one, `reopen`/`crash` through the hooks. */
export interface BackendCaseContext {
  backend(): Promise<SyncBackend>
  reopen(b: SyncBackend): Promise<SyncBackend>
  crash(b: SyncBackend): Promise<SyncBackend>
}

/** One case of the suite. `run()` opens its backends, checks, and closes them; it rejects with the failed expectation. */
export interface BackendConformanceCase {
  /** The group, e.g. 'rule 3: pushes are idempotent by event id'. */
  readonly suite: string
  readonly name: string
  /** Why the case cannot run with the options given (a hook is missing); undefined when it can. */
  readonly skip: string | undefined
  run(): Promise<void>
}

const SKIP_REASONS = {
  reopen: 'no reopen hook: pass options.reopen to check that close and reopen keep the data',
  crash:
    'no crash hook: pass options.crash (reopen without close) to check durability across a crash; not applicable to a backend that keeps nothing across one, such as memoryBackend',
} as const

/**
 * Registers the backend acceptance suite; a custom backend author calls it at
 * the top level of a vitest test file. `makeBackend` is called once per test
 * and should give an empty backend (e.g. a fresh temporary directory).
 * @example runBackendConformance('myBackend', () => myBackend({ url }), { reopen: (b) => myBackend({ url }), crash: (b) => myBackend({ url }) })
 */
export function runBackendConformance(name: string, makeBackend: MakeBackend, options: BackendConformanceOptions = {}): void {
  const cases = backendConformanceCases(makeBackend, options)
  vitest.describe(`${name}: SyncBackend conformance`, () => {
    for (const suite of new Set(cases.map((c) => c.suite))) {
      vitest.describe(suite, () => {
        for (const c of cases.filter((k) => k.suite === suite)) {
          vitest.it(c.name, async (context) => {
            if (c.skip) context.skip(c.skip)
            await c.run()
          })
        }
      })
    }
  })
}

/**
 * The suite's cases, to run one at a time outside `runBackendConformance`
 * (e.g. to assert that a deliberately broken backend fails one).
 * @example await backendConformanceCases(make).find((c) => c.name.startsWith('refuses an empty push'))!.run()
 */
export function backendConformanceCases(makeBackend: MakeBackend, options: BackendConformanceOptions = {}): BackendConformanceCase[] {
  const cases: BackendConformanceCase[] = []
  let suite = ''
  const describe = (name: string, body: () => void) => {
    const outer = suite
    suite = name
    body()
    suite = outer
  }
  const it = (name: string, fn: (t: BackendCaseContext) => Promise<void>, skip?: string) => {
    cases.push({ suite, name, skip, run: () => runCase(fn) })
  }
  const itNeeds = (hook: 'reopen' | 'crash') => (name: string, fn: (t: BackendCaseContext) => Promise<void>) =>
    it(name, fn, options[hook] ? undefined : SKIP_REASONS[hook])

  async function runCase(fn: (t: BackendCaseContext) => Promise<void>): Promise<void> {
    const open = new Set<SyncBackend>()
    const t: BackendCaseContext = {
      async backend() {
        const b = await makeBackend()
        open.add(b)
        return b
      },
      async reopen(b) {
        if (!options.reopen) throw new Error(SKIP_REASONS.reopen)
        open.delete(b)
        await b.close()
        const fresh = await options.reopen(b)
        open.add(fresh)
        return fresh
      },
      async crash(b) {
        if (!options.crash) throw new Error(SKIP_REASONS.crash)
        open.delete(b) // abandoned: never closed
        const fresh = await options.crash(b)
        open.add(fresh)
        return fresh
      },
    }
    try {
      await fn(t)
    } finally {
      await Promise.all([...open].map((b) => b.close()))
    }
  }

  describe('pull', () => {
    it('answers a storeId never pushed to with no events, head 0 and more: false', async (t) => {
      const b = await t.backend()
      const page = await b.pull(storeId(), 0, 10)
      expect(page).toMatchObject({ type: 'pulled', events: [], head: 0, more: false })
      expect(typeof page.backendId).toBe('string')
      expect(page.backendId.length).toBeGreaterThan(0)
    })

    it('returns only events with seq > since, in seq order', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 6))
      const page = await b.pull(s, 2, 100)
      expect(page.events.map((e) => e.seq)).toEqual([3, 4, 5, 6])
      expect(page.events.map((e) => e.id)).toEqual(['a:3', 'a:4', 'a:5', 'a:6'])
    })

    it('answers since at or past the head with no events and more: false', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 3))
      expect(await b.pull(s, 3, 10)).toMatchObject({ events: [], head: 3, more: false })
      expect(await b.pull(s, 9, 10)).toMatchObject({ events: [], head: 3, more: false })
    })
  })

  describe('rule 1: the log is append-only, totally ordered, with dense seqs', () => {
    it('assigns seqs 1..n densely, in push order, across batches', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const pushed = [batch('a', 1, 2), batch('b', 1, 1), batch('a', 3, 4)]
      let head = 0
      for (const events of pushed) {
        const answer = await pushOk(b, s, head, events)
        expect(answer.firstSeq).toBe(head + 1)
        head += events.length
        expect(answer.head).toBe(head)
      }
      const all = await pullAll(b, s)
      expect(all.head).toBe(7)
      expect(all.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7])
      expect(all.events.map((e) => e.id)).toEqual(pushed.flat().map((e) => e.id))
    })

    it('never changes an event once it is in the log', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 3))
      const before = await pullAll(b, s)
      await pushOk(b, s, 3, batch('b', 1, 2))
      await b.push(s, { parentSeq: 1, events: batch('c', 1, 1) })
      const after = await pullAll(b, s)
      expect(after.events.slice(0, 3)).toEqual(before.events)
    })
  })

  describe('rule 2: a push is accepted only when parentSeq === head, atomically', () => {
    it('rejects a push whose parentSeq is behind the head, answering the head', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 3))
      expect(await b.push(s, { parentSeq: 1, events: batch('b', 1, 1) })).toEqual({ type: 'rejected', reason: 'behind', head: 3 })
    })

    it('rejects a push whose parentSeq is ahead of the head, answering the head', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      expect(await b.push(s, { parentSeq: 5, events: batch('b', 1, 1) })).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
    })

    it('appends nothing of a rejected batch', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      await b.push(s, { parentSeq: 0, events: batch('b', 1, 5) })
      const all = await pullAll(b, s)
      expect(all.head).toBe(2)
      expect(all.events.map((e) => e.id)).toEqual(['a:1', 'a:2'])
      // the rejected ids are not remembered either: pushed again on the head, they are accepted
      expect(await pushOk(b, s, 2, batch('b', 1, 5))).toMatchObject({ firstSeq: 3, head: 7 })
    })

    it('makes an accepted batch pullable by the time pushed is answered', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const events = batch('a', 1, 4)
      await pushOk(b, s, 0, events)
      const page = await b.pull(s, 0, 100)
      expect(page.head).toBe(4)
      expect(page.events.map((e) => e.id)).toEqual(events.map((e) => e.id))
    })

    it('lets exactly one of concurrent pushes on the same parentSeq win', async (t) => {
      const b = await t.backend()
      const s = storeId()
      for (const [round, parentSeq] of [
        [1, 0],
        [2, 2],
      ] as const) {
        const batches = Array.from({ length: 8 }, (_, k) => batch(`r${round}c${k}`, 1, 2))
        const answers = await Promise.all(batches.map((events) => b.push(s, { parentSeq, events })))
        const winners = answers.flatMap((a, k) => (a.type === 'pushed' ? [k] : []))
        expect(winners).toHaveLength(1)
        for (const a of answers) if (a.type === 'rejected') expect(a).toEqual({ type: 'rejected', reason: 'behind', head: parentSeq + 2 })
        const all = await pullAll(b, s)
        expect(all.events.slice(parentSeq).map((e) => e.id)).toEqual(batches[winners[0]!]!.map((e) => e.id))
      }
    })

    it('keeps the log dense, each event once, while many pushers race and retry from the head they were answered', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const clients = Array.from({ length: 6 }, (_, k) => batch(`racer${k}`, 1, 5))
      await Promise.all(
        clients.map(async (mine) => {
          let head = 0
          let pending = mine
          while (pending.length > 0) {
            const events = pending.slice(0, 2)
            const answer = await b.push(s, { parentSeq: head, events })
            head = answer.head
            if (answer.type === 'pushed') pending = pending.slice(events.length)
          }
        }),
      )
      const all = await pullAll(b, s)
      expect(all.events.map((e) => e.seq)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1))
      expect(new Set(all.events.map((e) => e.id)).size).toBe(30)
      for (const mine of clients) {
        const order = all.events.filter((e) => e.clientId === mine[0]!.clientId).map((e) => e.id)
        expect(order).toEqual(mine.map((e) => e.id))
      }
    })
  })

  describe('rule 3: pushes are idempotent by event id', () => {
    it('answers a retried push with pushed and the same firstSeq, appending nothing', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 1))
      const events = batch('b', 1, 3)
      const first = await pushOk(b, s, 1, events)
      const retry = await pushOk(b, s, 1, events)
      expect(retry).toMatchObject({ firstSeq: first.firstSeq, head: 4, backendId: first.backendId })
      expect((await pullAll(b, s)).head).toBe(4)
    })

    it('answers a retried push with pushed and the same firstSeq even after other events were appended since', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const events = batch('a', 1, 2)
      await pushOk(b, s, 0, events)
      await pushOk(b, s, 2, batch('b', 1, 3))
      expect(await pushOk(b, s, 0, events)).toMatchObject({ firstSeq: 1, head: 5 })
      expect((await pullAll(b, s)).events.map((e) => e.id)).toEqual(['a:1', 'a:2', 'b:1', 'b:2', 'b:3'])
    })

    it('answers concurrent copies of one push with the same firstSeq and stores the batch once', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const events = batch('a', 1, 3)
      const answers = await Promise.all([1, 2, 3].map(() => b.push(s, { parentSeq: 0, events })))
      for (const a of answers) expect(a).toMatchObject({ type: 'pushed', firstSeq: 1 })
      expect((await pullAll(b, s)).events.map((e) => e.id)).toEqual(['a:1', 'a:2', 'a:3'])
    })

    it('refuses a push mixing stored and new ids with invalid_message and appends nothing', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      const mixed = [...batch('a', 2, 2), ...batch('b', 1, 1)]
      await refused(b.push(s, { parentSeq: 2, events: mixed }), `push(${s}, parentSeq 2, [a:2, b:1]) mixing a stored id with a new one`)
      // not on the head, the push may be answered rejected first: the client's rebase then drops a:2
      const behind = await b.push(s, { parentSeq: 1, events: mixed }).catch((error: { code?: string }) => error.code)
      expect(
        behind === 'invalid_message' || (typeof behind === 'object' && behind.type === 'rejected'),
        'a mixed push on parentSeq 1 is answered invalid_message or rejected',
      ).toBe(true)
      const all = await pullAll(b, s)
      expect(all.events.map((e) => e.id)).toEqual(['a:1', 'a:2'])
    })

    it('never appends an id already in the log, even pushed on the head', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      await refused(b.push(s, { parentSeq: 2, events: batch('a', 1, 1) }), `push(${s}, parentSeq 2, [a:1]) of an id already in the log`)
      expect((await pullAll(b, s)).head).toBe(2)
    })
  })

  describe('backendId in a push: the incarnation of the log it is based on', () => {
    it('rejects a push naming another backendId, with or without anyHead, appending nothing; its own is judged as usual', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const { backendId } = await pushOk(b, s, 0, batch('a', 1, 2))
      const other = `${backendId}-wiped`
      expect(await b.push(s, { parentSeq: 2, events: batch('b', 1, 1), backendId: other }), 'a push at the head naming another backendId').toEqual({
        type: 'rejected',
        reason: 'behind',
        head: 2,
      })
      expect(await b.push(s, { parentSeq: 0, events: batch('b', 1, 1), anyHead: true, backendId: other }), 'an anyHead push naming another backendId').toEqual({
        type: 'rejected',
        reason: 'behind',
        head: 2,
      })
      expect((await pullAll(b, s)).head).toBe(2)
      expect(await b.push(s, { parentSeq: 2, events: batch('b', 1, 1), backendId })).toMatchObject({ type: 'pushed', firstSeq: 3 })
    })
  })

  describe('anyHead: a push appended on the head wherever it is at or past parentSeq', () => {
    it('appends an anyHead push whose parentSeq is behind the head after the head', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 3))
      const answer = await b.push(s, { parentSeq: 1, events: batch('b', 1, 2), anyHead: true })
      expect(answer, `push(${s}, parentSeq 1, anyHead) on head 3`).toMatchObject({ type: 'pushed', firstSeq: 4, head: 5 })
      expect((await pullAll(b, s)).events.map((e) => `${e.seq} ${e.id}`)).toEqual(['1 a:1', '2 a:2', '3 a:3', '4 b:1', '5 b:2'])
    })

    it('rejects an anyHead push whose parentSeq is ahead of the head, appending nothing', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      expect(await b.push(s, { parentSeq: 3, events: batch('b', 1, 1), anyHead: true })).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
      expect((await pullAll(b, s)).head).toBe(2)
    })

    it('answers a retried anyHead push with the firstSeq it got, appending nothing, after others appended since', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      const events = batch('b', 1, 2)
      expect(await b.push(s, { parentSeq: 0, events, anyHead: true })).toMatchObject({ type: 'pushed', firstSeq: 3 })
      await pushOk(b, s, 4, batch('c', 1, 1))
      expect(await b.push(s, { parentSeq: 0, events, anyHead: true }), 'the retry').toMatchObject({ type: 'pushed', firstSeq: 3, head: 5 })
      expect((await pullAll(b, s)).events.map((e) => e.id)).toEqual(['a:1', 'a:2', 'b:1', 'b:2', 'c:1'])
    })

    it('accepts every one of concurrent anyHead pushes on one stale parentSeq, each batch once and contiguous', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 1))
      const batches = Array.from({ length: 6 }, (_, k) => batch(`c${k}`, 1, 3))
      const answers = await Promise.all(batches.map((events) => b.push(s, { parentSeq: 0, events, anyHead: true })))
      for (const a of answers) expect(a).toMatchObject({ type: 'pushed' })
      const all = await pullAll(b, s)
      expect(all.events.map((e) => e.seq)).toEqual(Array.from({ length: 19 }, (_, i) => i + 1))
      batches.forEach((events, k) => {
        const firstSeq = (answers[k] as Extract<PushResponse, { type: 'pushed' }>).firstSeq
        expect(all.events.slice(firstSeq - 1, firstSeq - 1 + 3).map((e) => e.id)).toEqual(events.map((e) => e.id))
      })
    })

    it('answers an anyHead push mixing stored and new ids rejected behind the head, invalid_message at it, appending nothing', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 3))
      const mixed = [...batch('a', 3, 1), ...batch('b', 1, 1)]
      // a:3 may be an earlier push of the client's that landed after its pull: it must pull, not fail
      expect(await b.push(s, { parentSeq: 1, events: mixed, anyHead: true }), `push(${s}, parentSeq 1, anyHead, [a:3, b:1])`).toEqual({
        type: 'rejected',
        reason: 'behind',
        head: 3,
      })
      await refused(b.push(s, { parentSeq: 3, events: mixed, anyHead: true }), `push(${s}, parentSeq 3, anyHead, [a:3, b:1]) mixing a stored id with a new one`)
      expect((await pullAll(b, s)).head).toBe(3)
    })
  })

  describe('pagination', () => {
    it('honours limit and says more: true while events remain past the page', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const events = batch('a', 1, 25)
      await pushOk(b, s, 0, events)
      const first = await b.pull(s, 0, 10)
      expect(first).toMatchObject({ head: 25, more: true })
      expect(first.events.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10])
      const last = await b.pull(s, 20, 10)
      expect(last).toMatchObject({ head: 25, more: false })
      expect(last.events.map((e) => e.seq)).toEqual([21, 22, 23, 24, 25])
      const exact = await b.pull(s, 15, 10)
      expect(exact.events).toHaveLength(10)
      expect(exact.more).toBe(false)
      expect((await pullAll(b, s, 7)).events.map((e) => e.id)).toEqual(events.map((e) => e.id))
    })

    it(`caps a page at MAX_PULL_LIMIT (${MAX_PULL_LIMIT}) whatever limit asks`, async (t) => {
      const b = await t.backend()
      const s = storeId()
      const total = MAX_PULL_LIMIT + 7
      for (let head = 0; head < total; head += 500) await pushOk(b, s, head, batch('a', head + 1, Math.min(500, total - head)))
      const page = await b.pull(s, 0, MAX_PULL_LIMIT * 10)
      expect(page.events).toHaveLength(MAX_PULL_LIMIT)
      expect(page).toMatchObject({ head: total, more: true })
      const rest = await b.pull(s, MAX_PULL_LIMIT, Number.MAX_SAFE_INTEGER)
      expect(rest.events.map((e) => e.seq)).toEqual(Array.from({ length: 7 }, (_, i) => MAX_PULL_LIMIT + i + 1))
      expect(rest.more).toBe(false)
    })
  })

  describe('rule 4: backendId identifies one incarnation of a log', () => {
    it('answers the same backendId in every pulled and pushed answer', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const ids = new Set<string>()
      ids.add((await b.pull(s, 0, 10)).backendId)
      ids.add((await pushOk(b, s, 0, batch('a', 1, 1))).backendId)
      ids.add((await pushOk(b, s, 1, batch('a', 2, 1))).backendId)
      ids.add((await pushOk(b, s, 1, batch('a', 2, 1))).backendId)
      ids.add((await b.pull(s, 0, 10)).backendId)
      ids.add((await b.pull(s, 1, 1)).backendId)
      expect(ids.size).toBe(1)
    })

    itNeeds('reopen')('keeps backendId across close and reopen', async (t) => {
      let b = await t.backend()
      const s = storeId()
      const { backendId } = await pushOk(b, s, 0, batch('a', 1, 1))
      b = await t.reopen(b)
      expect((await b.pull(s, 0, 10)).backendId).toBe(backendId)
      expect((await b.pull(storeId(), 0, 10)).backendId).toBe(backendId)
      b = await t.reopen(b)
      expect((await pushOk(b, s, 1, batch('a', 2, 1))).backendId).toBe(backendId)
    })
  })

  describe('durability: acknowledged events survive close and reopen', () => {
    itNeeds('reopen')('keeps every acknowledged event, dense and exactly as pushed, across reopen', async (t) => {
      let b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 3))
      await pushOk(b, s, 3, [pending('b:1', roundTripArgs)])
      const before = await pullAll(b, s)
      b = await t.reopen(b)
      const after = await pullAll(b, s)
      expect(after).toStrictEqual(before)
    })

    itNeeds('reopen')('continues seqs from the stored head after reopen', async (t) => {
      let b = await t.backend()
      const s = storeId()
      await pushOk(b, s, 0, batch('a', 1, 2))
      b = await t.reopen(b)
      expect(await b.push(s, { parentSeq: 0, events: batch('b', 1, 1) })).toEqual({ type: 'rejected', reason: 'behind', head: 2 })
      expect(await pushOk(b, s, 2, batch('b', 1, 2))).toMatchObject({ firstSeq: 3, head: 4 })
      b = await t.reopen(b)
      expect((await pullAll(b, s)).events.map((e) => `${e.seq}=${e.id}`)).toEqual(['1=a:1', '2=a:2', '3=b:1', '4=b:2'])
    })

    itNeeds('reopen')('still recognises stored event ids after reopen (rule 3)', async (t) => {
      let b = await t.backend()
      const s = storeId()
      const events = batch('a', 1, 2)
      await pushOk(b, s, 0, events)
      await pushOk(b, s, 2, batch('b', 1, 1))
      b = await t.reopen(b)
      expect(await pushOk(b, s, 0, events)).toMatchObject({ firstSeq: 1, head: 3 })
      await refused(b.push(s, { parentSeq: 3, events: batch('a', 2, 1) }), `push(${s}, parentSeq 3, [a:2]) of an id stored before the reopen`)
      expect((await pullAll(b, s)).head).toBe(3)
    })
  })

  describe('storeIds are isolated from each other', () => {
    it('keeps a separate log, head and seq numbering per storeId', async (t) => {
      const b = await t.backend()
      const [s1, s2] = [storeId(), storeId()]
      await pushOk(b, s1, 0, batch('a', 1, 3))
      expect(await pushOk(b, s2, 0, batch('b', 1, 1))).toMatchObject({ firstSeq: 1, head: 1 })
      expect(await b.push(s2, { parentSeq: 3, events: batch('b', 2, 1) })).toEqual({ type: 'rejected', reason: 'behind', head: 1 })
      expect((await pullAll(b, s1)).events.map((e) => e.id)).toEqual(['a:1', 'a:2', 'a:3'])
      expect((await pullAll(b, s2)).events.map((e) => e.id)).toEqual(['b:1'])
    })

    it('judges event ids per storeId: an id stored in one log is new in another', async (t) => {
      const b = await t.backend()
      const [s1, s2] = [storeId(), storeId()]
      const events = batch('a', 1, 2)
      await pushOk(b, s1, 0, batch('x', 1, 1))
      await pushOk(b, s1, 1, events)
      expect(await pushOk(b, s2, 0, events)).toMatchObject({ firstSeq: 1, head: 2 })
    })

    it('accepts concurrent pushes to different storeIds independently', async (t) => {
      const b = await t.backend()
      const stores = Array.from({ length: 6 }, () => storeId())
      const answers = await Promise.all(stores.map((s, k) => b.push(s, { parentSeq: 0, events: batch(`c${k}`, 1, 3) })))
      for (const a of answers) expect(a).toMatchObject({ type: 'pushed', firstSeq: 1, head: 3 })
      for (const [k, s] of stores.entries()) expect((await pullAll(b, s)).events.map((e) => e.id)).toEqual([`c${k}:1`, `c${k}:2`, `c${k}:3`])
    })

    it('notifies subscribers of their own storeId only', async (t) => {
      const b = await t.backend()
      const [s1, s2] = [storeId(), storeId()]
      const w1 = watch(b, s1)
      const w2 = watch(b, s2)
      await pushOk(b, s1, 0, batch('a', 1, 2))
      await pushOk(b, s2, 0, batch('b', 1, 1))
      await Promise.all([w1.until(2), w2.until(1)])
      expect(Math.max(...w1.heads)).toBe(2)
      expect(Math.max(...w2.heads)).toBe(1)
    })
  })

  describe('rule 5: subscribe notifies the head after the events are pullable', () => {
    it('calls onHead with the new head after each push, never going backwards', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const w = watch(b, s)
      await pushOk(b, s, 0, batch('a', 1, 2))
      await w.until(2)
      await pushOk(b, s, 2, batch('a', 3, 1))
      await w.until(3)
      expect(w.heads.at(-1)).toBe(3)
      expect([...w.heads].sort((x, y) => x - y)).toEqual(w.heads)
    })

    it('never calls onHead before the events up to that head are pullable', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const checks: Promise<void>[] = []
      b.subscribe(s, (head) => {
        checks.push(
          b.pull(s, 0, MAX_PULL_LIMIT).then((page) => {
            expect(page.head).toBeGreaterThanOrEqual(head)
            expect(page.events.slice(0, head).map((e) => e.seq)).toEqual(Array.from({ length: head }, (_, i) => i + 1))
          }),
        )
      })
      const w = watch(b, s)
      for (let head = 0; head < 6; head += 2) await pushOk(b, s, head, batch('a', head + 1, 2))
      await w.until(6)
      expect(checks.length).toBeGreaterThan(0)
      await Promise.all(checks)
    })

    it('calls every subscriber of a storeId', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const watchers = [watch(b, s), watch(b, s), watch(b, s)]
      await pushOk(b, s, 0, batch('a', 1, 1))
      await Promise.all(watchers.map((w) => w.until(1)))
    })

    it('stops calling onHead after unsubscribe', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const stopped = watch(b, s)
      const kept = watch(b, s)
      await pushOk(b, s, 0, batch('a', 1, 1))
      await stopped.until(1)
      stopped.unsubscribe()
      const seen = stopped.heads.length
      await pushOk(b, s, 1, batch('a', 2, 1))
      await kept.until(2)
      await pushOk(b, s, 2, batch('a', 3, 1))
      await kept.until(3)
      await new Promise((resolve) => setTimeout(resolve, 0))
      expect(stopped.heads).toHaveLength(seen)
    })
  })

  describe('events round-trip exactly', () => {
    it('returns nested JSON args, unicode text and every event field exactly as pushed', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const argsList: JsonValue[] = [roundTripArgs, null, 'plain', 42, -0.5, true, [], {}, [[[{ deep: [1, [2, [3]]] }]]]]
      const events = argsList.map((args, i) => ({
        ...pending(`ü-client:${i}`, args, i % 2 ? 'todo.created/ünïcode 🚀' : 'x'),
        sessionId: i % 2 ? '' : 'séssion-🦊',
        createdAt: i % 2 ? 1.5 : -1,
      }))
      await pushOk(b, s, 0, events)
      const all = await pullAll(b, s)
      expect(all.events).toStrictEqual(events.map((e, i) => ({ ...e, seq: i + 1 })))
    })

    it('keeps strings with NUL, control characters and line separators exactly', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const text = 'a\u0000b\u0001\t\n\r\u001f\u007f\u2028\u2029"\\/\uFEFFz'
      await pushOk(b, s, 0, [pending('a:1', { text, [text]: [text] })])
      const [event] = (await b.pull(s, 0, 1)).events
      expect(event!.args).toStrictEqual({ text, [text]: [text] })
    })

    it('stores a copy: changing pushed objects afterwards does not change the log', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const events = [pending('a:1', { list: [1, 2], nested: { v: 'x' } })]
      await pushOk(b, s, 0, events)
      const args = events[0]!.args as { list: number[]; nested: { v: string } }
      args.list.push(3)
      args.nested.v = 'changed'
      events[0]!.name = 'changed'
      const [stored] = (await b.pull(s, 0, 1)).events
      expect(stored).toMatchObject({ name: 'todoCreated', args: { list: [1, 2], nested: { v: 'x' } } })
    })
  })

  describe('a push carries at least one event', () => {
    it('refuses an empty push with invalid_message, on an empty log and on the head, appending nothing', async (t) => {
      const b = await t.backend()
      const s = storeId()
      await refused(b.push(s, { parentSeq: 0, events: [] }), `push(${s}, parentSeq 0, events: []) on an empty log`)
      await pushOk(b, s, 0, batch('a', 1, 2))
      for (const parentSeq of [2, 0]) {
        await refused(b.push(s, { parentSeq, events: [] }), `push(${s}, parentSeq ${parentSeq}, events: []) at head 2`)
      }
      const all = await pullAll(b, s)
      expect(
        all.events.map((e) => e.id),
        'the log after empty pushes',
      ).toEqual(['a:1', 'a:2'])
      expect(all.head, 'the head after empty pushes').toBe(2)
    })
  })

  describe('durability: what was answered survives a crash (reopen without close)', () => {
    itNeeds('crash')('keeps every event answered pushed, exactly as pushed, when the process dies right after the answer', async (t) => {
      const b = await t.backend()
      const [s1, s2] = [storeId(), storeId()]
      const acked: { storeId: string; parentSeq: number; events: PendingEvent[]; firstSeq: number }[] = []
      const push = async (s: string, parentSeq: number, events: PendingEvent[]) => {
        const answer = await pushOk(b, s, parentSeq, events)
        acked.push({ storeId: s, parentSeq, events, firstSeq: answer.firstSeq })
      }
      await push(s1, 0, batch('a', 1, 3))
      await push(s1, 3, [pending('b:1', roundTripArgs)])
      const before = await pullAll(b, s1)
      // the last answers arrive together, for two logs, and the crash follows at once
      await Promise.all([push(s1, 4, batch('c', 1, 2)), push(s2, 0, batch('d', 1, 4))])
      const after = await t.crash(b)
      for (const a of acked) {
        const request = `push(${a.storeId}, parentSeq ${a.parentSeq}, [${a.events.map((e) => e.id).join(', ')}])`
        const page = await after.pull(a.storeId, a.parentSeq, a.events.length)
        expect(
          page.events.map((e) => `${e.seq}=${e.id}`),
          `${request} was answered pushed (firstSeq ${a.firstSeq}) but is not in the log after the crash: pushed must be answered only once the events are durable`,
        ).toEqual(a.events.map((e, i) => `${a.firstSeq + i}=${e.id}`))
      }
      const s1After = await pullAll(after, s1)
      expect(
        s1After.events.slice(0, before.events.length),
        `pull(${s1}, 0) after the crash must return the acknowledged events exactly as before it`,
      ).toStrictEqual(before.events)
      expect(s1After.head, `head of ${s1} after the crash`).toBe(6)
      expect((await pullAll(after, s2)).head, `head of ${s2} after the crash`).toBe(4)
    })

    itNeeds('crash')('keeps backendId across a crash', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const { backendId } = await pushOk(b, s, 0, batch('a', 1, 1))
      const after = await t.crash(b)
      expect((await after.pull(s, 0, 10)).backendId, `backendId of pull(${s}, 0) after a crash (push(${s}, parentSeq 0) answered ${backendId})`).toBe(backendId)
      expect((await after.pull(storeId(), 0, 10)).backendId, 'backendId of a pull of a new storeId after a crash').toBe(backendId)
    })

    itNeeds('crash')('continues seqs and recognises stored ids after a crash', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const events = batch('a', 1, 2)
      await pushOk(b, s, 0, events)
      const after = await t.crash(b)
      expect(await after.push(s, { parentSeq: 0, events }), `retried push(${s}, parentSeq 0, [a:1, a:2]) after a crash`).toMatchObject({
        type: 'pushed',
        firstSeq: 1,
        head: 2,
      })
      expect(await after.push(s, { parentSeq: 0, events: batch('b', 1, 1) }), `push(${s}, parentSeq 0, [b:1]) after a crash at head 2`).toEqual({
        type: 'rejected',
        reason: 'behind',
        head: 2,
      })
      expect(await after.push(s, { parentSeq: 2, events: batch('b', 1, 1) }), `push(${s}, parentSeq 2, [b:1]) after a crash`).toMatchObject({
        type: 'pushed',
        firstSeq: 3,
        head: 3,
      })
    })

    itNeeds('crash')('tells subscribers only heads that survive a crash', async (t) => {
      const b = await t.backend()
      const s = storeId()
      const w = watch(b, s)
      for (let head = 0; head < 6; head += 2) await pushOk(b, s, head, batch('a', head + 1, 2))
      await w.until(6)
      const told = Math.max(...w.heads)
      w.unsubscribe()
      const after = await t.crash(b)
      expect(
        (await pullAll(after, s)).head,
        `subscribe(${s}) was told head ${told}; after a crash the log must reach it (onHead only after the events are durable)`,
      ).toBeGreaterThanOrEqual(told)
    })
  })
  return cases
}

const roundTripArgs: JsonValue = {
  emoji: '👩‍👩‍👧‍👦 🏳️‍🌈 😀',
  scripts: 'Ελληνικά Русский 中文 日本語 한국어 עברית العربية हिन्दी',
  combining: 'e\u0301 n\u0303 Å',
  astral: '𝄞 𠜎',
  quotes: `'"\`\\`,
  numbers: [0, 1, -1, 0.1, 1e-300, 1.7976931348623157e308, Number.MAX_SAFE_INTEGER, -Number.MAX_SAFE_INTEGER],
  flags: [true, false, null],
  empty: { '': '', list: [], obj: {} },
  nested: { a: { b: { c: { d: { e: [{ f: [null, { g: 'deep' }] }] } } } } },
  long: 'x'.repeat(10_000),
}

let idCounter = 0

function storeId(): string {
  return `conformance-${Date.now().toString(36)}-${(idCounter++).toString(36)}-${Math.random().toString(36).slice(2, 8)}`
}

function pending(id: string, args: JsonValue = { id }, name = 'todoCreated'): PendingEvent {
  return { id, name, args, clientId: id.slice(0, id.lastIndexOf(':')), sessionId: 'session-1', createdAt: 1_700_000_000_000 + idCounter++ }
}

/** Events `${clientId}:${from}` .. `${clientId}:${from + count - 1}`. */
function batch(clientId: string, from: number, count: number): PendingEvent[] {
  return Array.from({ length: count }, (_, i) => pending(`${clientId}:${from + i}`))
}

/** Expects `answer` to reject with a protocol error of `code` (how a backend signals a violation); the message names `request`. */
async function refused(answer: Promise<unknown>, request: string, code = 'invalid_message'): Promise<void> {
  let outcome: { resolved: unknown } | { error: unknown }
  try {
    outcome = { resolved: await answer }
  } catch (error) {
    outcome = { error }
  }
  if ('resolved' in outcome) expect.fail(`${request} must reject with an ${code} protocol error, but it answered ${JSON.stringify(outcome.resolved)}`)
  expect((outcome.error as { code?: unknown })?.code, `${request} must reject with an ${code} protocol error; it rejected with ${String(outcome.error)}`).toBe(
    code,
  )
}

async function pushOk(b: SyncBackend, storeId: string, parentSeq: number, events: PendingEvent[]): Promise<Extract<PushResponse, { type: 'pushed' }>> {
  const answer = await b.push(storeId, { parentSeq, events })
  expect(answer, `push of ${events.length} event(s) on parentSeq ${parentSeq}`).toMatchObject({ type: 'pushed' })
  return answer as Extract<PushResponse, { type: 'pushed' }>
}

async function pullAll(b: SyncBackend, storeId: string, limit = MAX_PULL_LIMIT): Promise<Omit<PullResponse, 'more' | 'type'>> {
  const events: ConfirmedEvent[] = []
  for (;;) {
    const page = await b.pull(storeId, events.length, limit)
    events.push(...page.events)
    if (!page.more) return { events, head: page.head, backendId: page.backendId }
    expect(page.events.length, 'a page with more: true carries events').toBeGreaterThan(0)
  }
}

/** Records the heads a subscriber is told; `until(head)` resolves once one at least that high arrived. */
function watch(b: SyncBackend, storeId: string) {
  const heads: number[] = []
  let waiting: { head: number; resolve: () => void }[] = []
  const unsubscribe = b.subscribe(storeId, (head) => {
    heads.push(head)
    waiting = waiting.filter((w) => {
      if (head < w.head) return true
      w.resolve()
      return false
    })
  })
  const until = (head: number) => (heads.some((h) => h >= head) ? Promise.resolve() : new Promise<void>((resolve) => waiting.push({ head, resolve })))
  return { heads, unsubscribe, until }
}
