/**
 * I1 for the eventlog's own counters: a transaction that fails rolls back the head and the
 * pending count with the rows, so that the log never says it holds what its tables do not; and a
 * rebase names every table it changed, the ones it only undid too.
 */

import { type ConfirmedEvent, defineEvent, defineSchema, type PendingEvent, sql } from 'tidelog'
import { describe, expect, it } from 'vitest'
import { loadSqlJs } from '../src/database.js'
import { createEventLog, type EventLogHooks } from '../src/eventlog.js'
import { itemsUiSchema } from './helpers/items-ui-schema.js'

const hooks: EventLogHooks = { dev: false, onWarning: () => {}, onUnknownEvent: () => {} }
const event = (id: string, value: number): PendingEvent => ({ id, name: 'set', args: { id, value }, clientId: id.split(':')[0]!, sessionId: 's', createdAt: 1 })

describe('eventlog: a failed rebase', () => {
  it('leaves head, pending count, rows and state as they were when onConflict throws after the upstream events were applied', async () => {
    const log = createEventLog(await loadSqlJs(), itemsUiSchema, hooks)
    log.commit([event('me:1', 1)], false)
    const upstream: ConfirmedEvent[] = [1, 2].map((seq) => ({ ...event(`other:${seq}`, 10 + seq), seq }))
    const broken = () => {
      throw new Error('merge hook failed')
    }
    expect(() => log.applyUpstream(upstream, broken)).toThrow('merge hook failed')
    expect({ head: log.head, pending: log.pendingCount }).toEqual({ head: 0, pending: 1 })
    expect(log.events().map((e) => [e.id, e.seq])).toEqual([['me:1', null]])
    expect(log.db.all({ sql: 'SELECT id, value FROM items ORDER BY id', params: [] })).toEqual([{ id: 'me:1', value: 1 }])
    // the log goes on from there: the same events apply once the hook works
    const change = log.applyUpstream(upstream, (local) => local)
    expect({ head: log.head, pending: log.pendingCount, dropped: change.dropped.size }).toEqual({ head: 2, pending: 1, dropped: 0 })
    log.close()
  })
})

describe('eventlog: the tables a rebase reports written (for the query signals)', () => {
  const schema = defineSchema({
    tables: {
      items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
      notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)`,
      tags: sql`CREATE TABLE tags (id TEXT PRIMARY KEY)`,
    },
    events: {
      set: defineEvent<{ id: string; value: number }>({
        materialize: ({ id, value }) => sql`INSERT OR REPLACE INTO items (id, value) VALUES (${id}, ${value})`,
      }),
      note: defineEvent<{ id: string; body: string }>({ materialize: ({ id, body }) => sql`INSERT INTO notes (id, body) VALUES (${id}, ${body})` }),
      tag: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`INSERT INTO tags (id) VALUES (${id})` }),
    },
  })
  const note = (i: number): PendingEvent => ({ id: `me:${i}`, name: 'note', args: { id: `n${i}`, body: 'x' }, clientId: 'me', sessionId: 's', createdAt: 1 })
  const upstream: ConfirmedEvent[] = [1, 2].map((seq) => ({ ...event(`other:${seq}`, seq), seq }))
  const notes = (log: ReturnType<typeof createEventLog>) => log.db.column<number>({ sql: 'SELECT count(*) FROM notes', params: [] })[0]

  // 3 pending events take the per-event path, 100 the batch that runs unwatched; one commit or one commit each
  for (const [n, oneCommit] of [
    [3, true],
    [100, true],
    [100, false],
  ] as const) {
    const label = `${n} pending in ${oneCommit ? 'one commit' : `${n} commits`}`
    const withPending = async () => {
      const log = createEventLog(await loadSqlJs(), schema, hooks)
      const events = Array.from({ length: n }, (_, i) => note(i))
      if (oneCommit) log.commit(events, false)
      else for (const e of events) log.commit([e], false)
      return log
    }

    it(`${label}: kept on top of upstream events, both tables`, async () => {
      const log = await withPending()
      const change = log.applyUpstream(upstream, (local) => local)
      expect([...change.written].sort()).toEqual(['items', 'notes'])
      expect({ notes: notes(log), pending: log.pendingCount, head: log.head }).toEqual({ notes: n, pending: n, head: 2 })
      log.close()
    })

    it(`${label}: dropped by onConflict, the table they wrote is reported although nothing writes it again`, async () => {
      const log = await withPending()
      const change = log.applyUpstream(upstream, () => [])
      expect([...change.written].sort()).toEqual(['items', 'notes'])
      expect({ notes: notes(log), pending: log.pendingCount, dropped: change.dropped.size }).toEqual({ notes: 0, pending: 0, dropped: n })
      log.close()
    })

    it(`${label}: replaced by onConflict with events that write a third table, that one too`, async () => {
      const log = await withPending()
      const change = log.applyUpstream(upstream, (local) => local.map((p) => ({ ...p, id: `${p.id}-tag`, name: 'tag', args: { id: p.id } })))
      expect([...change.written].sort()).toEqual(['items', 'notes', 'tags'])
      expect(log.db.column<number>({ sql: 'SELECT count(*) FROM tags', params: [] })[0]).toBe(n)
      log.close()
    })

    it(`${label}: dropped with no upstream event (a client tab following its owner's list)`, async () => {
      const log = await withPending()
      const change = log.applyUpstream([], undefined, [])
      expect([...change.written]).toEqual(['notes'])
      expect(notes(log)).toBe(0)
      log.close()
    })
  }
})

describe('eventlog: a rebase keeps the rows of the pending events it re-applies', () => {
  // notes take plain INSERTs (a clash with an upstream note fails), counters an UPDATE of a row upstream also writes
  const schema = defineSchema({
    tables: {
      notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY, body TEXT NOT NULL)`,
      counters: sql`CREATE TABLE counters (id TEXT PRIMARY KEY, n INTEGER NOT NULL)`,
    },
    events: {
      note: defineEvent<{ id: string; body: string }>({ materialize: ({ id, body }) => sql`INSERT INTO notes (id, body) VALUES (${id}, ${body})` }),
      bump: defineEvent<{ id: string }>({
        materialize: ({ id }) => [sql`INSERT OR IGNORE INTO counters (id, n) VALUES (${id}, 0)`, sql`UPDATE counters SET n = n * 2 + 1 WHERE id = ${id}`],
      }),
    },
  })
  const mine = (i: number, name: 'note' | 'bump' = i % 3 === 0 ? 'bump' : 'note'): PendingEvent => ({
    id: `me:${i}`,
    name,
    args: name === 'note' ? { id: `n${i}`, body: `mine ${i}` } : { id: `c${i % 2}` },
    clientId: 'me',
    sessionId: 's',
    createdAt: i,
  })
  const theirs = (seq: number, args: { id: string; body: string } | { id: string }): ConfirmedEvent => ({
    id: `other:${seq}`,
    name: 'body' in args ? 'note' : 'bump',
    args,
    clientId: 'other',
    sessionId: 't',
    createdAt: seq,
    seq,
  })
  const open = async () => createEventLog(await loadSqlJs(), schema, hooks)
  /** Every row with its rowid, so that the order rows were written in counts too. */
  const state = (log: ReturnType<typeof createEventLog>) => ({
    notes: log.db.all({ sql: 'SELECT rowid, id, body FROM notes ORDER BY rowid', params: [] }),
    counters: log.db.all({ sql: 'SELECT rowid, id, n FROM counters ORDER BY rowid', params: [] }),
  })
  /** What a client that saw the confirmed events in order, then committed the pending ones, holds. */
  const oracle = async (confirmed: ConfirmedEvent[], pending: PendingEvent[]) => {
    const log = await open()
    if (confirmed.length) log.applyUpstream(confirmed, undefined)
    for (const p of pending) log.commit([p], false)
    const out = { state: state(log), pending: log.readPending().map((p) => p.id) }
    log.close()
    return out
  }
  const seen = async (log: ReturnType<typeof createEventLog>) => ({ state: state(log), pending: log.readPending().map((p) => p.id) })

  // 5 pending events take the per-event path, 100 the batch that runs unwatched
  for (const n of [5, 100]) {
    it(`${n} pending: rebased twice with half confirmed between, the state is the one of the log's order, rowids too`, async () => {
      const log = await open()
      const pending = Array.from({ length: n }, (_, i) => mine(i))
      for (const p of pending) log.commit([p], false)
      const first = [theirs(1, { id: 'x1', body: 'theirs' }), theirs(2, { id: 'c0' })]
      log.applyUpstream(first, undefined)
      expect(await seen(log)).toEqual(await oracle(first, pending))

      // the first half comes back as pushed: its capture tags must be those events' own, or the next rollback goes wrong
      const half = Math.floor(n / 2)
      const confirmed = log.confirm(
        3,
        pending.slice(0, half).map((p) => p.id),
      )
      expect(confirmed?.size).toBe(half)
      const more = [theirs(3 + half, { id: 'c1' }), theirs(4 + half, { id: 'x2', body: 'theirs' })]
      log.applyUpstream(more, undefined)
      const log2 = [...first, ...pending.slice(0, half).map((p, i) => ({ ...p, seq: 3 + i })), ...more]
      expect(await seen(log)).toEqual(await oracle(log2, pending.slice(half)))
      expect(log.pendingCount).toBe(n - half)
      log.close()
    })

    it(`${n} pending: one that fails on the rebased state is dropped, its row with it; the rest keep their order`, async () => {
      const log = await open()
      const pending = Array.from({ length: n }, (_, i) => mine(i, 'note'))
      for (const p of pending) log.commit([p], false)
      // upstream writes note n1 first: the pending event writing it fails there
      const up = [theirs(1, { id: 'n1', body: 'theirs' })]
      const change = log.applyUpstream(up, undefined)
      expect([...change.dropped.keys()]).toEqual(['me:1'])
      const rest = pending.filter((p) => p.id !== 'me:1')
      expect(await seen(log)).toEqual(await oracle(up, rest))
      // and the log goes on rebasing from there
      const next = [theirs(2, { id: 'c0' })]
      log.applyUpstream(next, undefined)
      expect(await seen(log)).toEqual(await oracle([...up, ...next], rest))
      log.close()
    })
  }

  it('an onConflict that reorders the pending events gets them in its order, rows written again', async () => {
    const log = await open()
    const pending = Array.from({ length: 6 }, (_, i) => mine(i))
    for (const p of pending) log.commit([p], false)
    const up = [theirs(1, { id: 'c1' })]
    log.applyUpstream(up, (local) => [...local].reverse())
    const reversed = [...pending].reverse()
    expect(await seen(log)).toEqual(await oracle(up, reversed))
    const next = [theirs(2, { id: 'c0' })]
    log.applyUpstream(next, undefined)
    expect(await seen(log)).toEqual(await oracle([...up, ...next], reversed))
    log.close()
  })
})

describe('eventlog: the undo log is in the database from its first DDL on', () => {
  const schema = defineSchema({
    tables: {
      items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
      pairs: sql`CREATE TABLE pairs (a TEXT NOT NULL, b TEXT NOT NULL, PRIMARY KEY (a, b)) WITHOUT ROWID`,
    },
    events: {},
  })
  const mainObjects = (log: ReturnType<typeof createEventLog>) => log.db.column<string>('SELECT name FROM main.sqlite_schema ORDER BY name')

  it('so that capturing after a boot from a snapshot changes nothing in the main database (no file growth, no copy)', async () => {
    const SQL = await loadSqlJs()
    const fresh = createEventLog(SQL, schema, hooks)
    const bytes = fresh.db.export()
    const pages = fresh.db.column<number>('PRAGMA main.page_count')[0]
    fresh.close()
    const booted = createEventLog(SQL, schema, hooks, bytes)
    const before = mainObjects(booted)
    expect(before).toEqual(expect.arrayContaining(['__tl_undo', '__tl_undo__items']))
    expect(before).not.toContain('__tl_undo__pairs') // a table without rowid keeps text entries in __tl_undo
    booted.prepareCapture()
    expect(mainObjects(booted)).toEqual(before)
    expect(booted.db.column<number>('PRAGMA main.page_count')[0]).toBe(pages)
    booted.close()
  })

  it("and a rebuild under a new schema makes the new tables' shadows with them", async () => {
    const SQL = await loadSqlJs()
    const old = createEventLog(SQL, schema, hooks)
    const bytes = old.db.export()
    old.close()
    const next = defineSchema({ tables: { ...schema.tables, notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY)` }, events: {} })
    const rebuilt = createEventLog(SQL, next, hooks, bytes, true)
    expect(mainObjects(rebuilt)).toEqual(expect.arrayContaining(['__tl_undo', '__tl_undo__items', '__tl_undo__notes']))
    rebuilt.close()
  })
})
