/**
 * Boot after a schema change rebuilds in place: the old snapshot's database
 * keeps its eventlog, its state schema is replaced and every event is
 * materialized again. This checks it against the way rebuilds were done
 * before, copying every event into a fresh database: on random logs of
 * confirmed, pending and local events (with an AUTOINCREMENT table, a WITHOUT
 * ROWID table, a trigger, a view, an event the new schema no longer knows and
 * a materializer that now fails), both must give the same state, eventlog,
 * undo log, progress reports, warnings and dropped events, and behave the same
 * afterwards (a rebase over new upstream events, then confirmations).
 * Replay a failure: TIDELOG_SEED=<seed> npx vitest run test/rebuild-in-place.test.ts
 */

import { type BootProgress, type ConfirmedEvent, defineEvent, defineSchema, type PendingEvent, type Schema, sql } from 'tidelog'
import { describe, expect, it } from 'vitest'
import { bootLog } from '../src/boot.js'
import { loadSqlJs } from '../src/database.js'
import { createEventLog, type DropReason, type EventLog, type EventLogHooks } from '../src/eventlog.js'
import { mulberry32 } from './helpers/random.js'

const commonTables = {
  log: sql`CREATE TABLE log (n INTEGER PRIMARY KEY AUTOINCREMENT, msg TEXT NOT NULL)`,
  kv: sql`CREATE TABLE kv (k TEXT PRIMARY KEY, v TEXT) WITHOUT ROWID`,
  audit: sql`CREATE TABLE audit (id INTEGER PRIMARY KEY, what TEXT NOT NULL)`,
  ui: sql`CREATE TABLE ui (k TEXT PRIMARY KEY, v TEXT)`,
}
const commonEvents = {
  remove: defineEvent<{ id: string }>({ materialize: ({ id }) => sql`DELETE FROM items WHERE id = ${id}` }),
  logged: defineEvent<{ msg: string }>({ materialize: ({ msg }) => sql`INSERT INTO log (msg) VALUES (${msg})` }),
  kvSet: defineEvent<{ k: string; v: string }>({ materialize: ({ k, v }) => sql`INSERT OR REPLACE INTO kv (k, v) VALUES (${k}, ${v})` }),
  uiSet: defineEvent<{ k: string; v: string }>({ local: true, materialize: ({ k, v }) => sql`INSERT OR REPLACE INTO ui (k, v) VALUES (${k}, ${v})` }),
}

const oldSchema = defineSchema({
  tables: { items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, value INTEGER NOT NULL)`, ...commonTables },
  indexes: [
    sql`CREATE INDEX items_value ON items(value)`,
    sql`CREATE VIEW big_items AS SELECT id FROM items WHERE value > 500`,
    sql`CREATE TRIGGER items_audit AFTER INSERT ON items BEGIN INSERT INTO audit (what) VALUES ('+' || new.id); END`,
  ],
  events: {
    ...commonEvents,
    set: defineEvent<{ id: string; value: number }>({
      materialize: ({ id, value }) => sql`INSERT INTO items (id, value) VALUES (${id}, ${value}) ON CONFLICT(id) DO UPDATE SET value = excluded.value`,
    }),
    add: defineEvent<{ id: string; by: number }>({ materialize: ({ id, by }) => sql`UPDATE items SET value = value + ${by} WHERE id = ${id}` }),
    retired: defineEvent<{ k: string }>({ materialize: ({ k }) => sql`DELETE FROM kv WHERE k = ${k}` }),
  },
})

/** Another items table, index, view and trigger; `set` writes a new column, `add` fails for one id, `retired` is gone. */
const newSchema = defineSchema({
  tables: { items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, value INTEGER NOT NULL, twice INTEGER NOT NULL DEFAULT 0)`, ...commonTables },
  indexes: [
    sql`CREATE INDEX items_twice ON items(twice)`,
    sql`CREATE VIEW small_items AS SELECT id FROM items WHERE value < 100`,
    sql`CREATE TRIGGER items_audit AFTER UPDATE OF value ON items BEGIN INSERT INTO audit (what) VALUES ('~' || new.id); END`,
  ],
  events: {
    ...commonEvents,
    set: defineEvent<{ id: string; value: number }>({
      version: 1,
      materialize: ({ id, value }) =>
        sql`INSERT INTO items (id, value, twice) VALUES (${id}, ${value}, ${2 * value}) ON CONFLICT(id) DO UPDATE SET value = excluded.value, twice = excluded.twice`,
    }),
    add: defineEvent<{ id: string; by: number }>({
      materialize: ({ id, by }, ctx) => {
        if (id === 'i7') throw new Error('i7 is frozen under the new schema')
        return sql`UPDATE items SET value = value + ${by}, twice = twice + ${2 * by} WHERE id = ${id} AND ${ctx.event.clientId} <> ''`
      },
    }),
  },
})

const SQL = await loadSqlJs()

interface Observed {
  hooks: EventLogHooks
  warnings: string[]
  unknown: string[]
  progress: BootProgress[]
}
function observed(): Observed {
  const o: Observed = {
    warnings: [],
    unknown: [],
    progress: [],
    hooks: { dev: false, onWarning: (m) => o.warnings.push(m), onUnknownEvent: (e) => o.unknown.push(`${e.name} ${e.id} ${e.seq}`) },
  }
  return o
}

/** A random event; `local` ones are uiSet. */
function randomEvent(random: () => number, id: string, clientId: string, n: number): PendingEvent & { local?: true } {
  const item = `i${Math.floor(random() * 12)}`
  const r = random()
  const base = { id, clientId, sessionId: `s-${clientId}`, createdAt: 1_700_000_000_000 + n }
  if (r < 0.3) return { ...base, name: 'set', args: { id: item, value: Math.floor(random() * 1000) } }
  if (r < 0.5) return { ...base, name: 'add', args: { id: item, by: 1 + Math.floor(random() * 9) } }
  if (r < 0.58) return { ...base, name: 'remove', args: { id: item } }
  if (r < 0.7) return { ...base, name: 'logged', args: { msg: `m${n} ✓` } }
  if (r < 0.8) return { ...base, name: 'kvSet', args: { k: `k${Math.floor(random() * 6)}`, v: `v${n}` } }
  if (r < 0.86) return { ...base, name: 'retired', args: { k: `k${Math.floor(random() * 6)}` } }
  return { ...base, name: 'uiSet', args: { k: `u${Math.floor(random() * 4)}`, v: `x${n}` }, local: true }
}

/** A log under the old schema after random upstream batches (rebases), own commits and confirmations; returns its snapshot bytes. */
function oldSnapshot(random: () => number): Uint8Array {
  const log = createEventLog(SQL, oldSchema, observed().hooks)
  let mine = 0
  let theirs = 0
  const steps = 20 + Math.floor(random() * 60)
  for (let step = 0; step < steps; step++) {
    const r = random()
    if (r < 0.4) {
      const batch = Array.from({ length: 1 + Math.floor(random() * 8) }, (_, i): ConfirmedEvent => {
        const { local: _local, ...e } = randomEvent(random, `other:${++theirs}`, 'other', theirs)
        return { ...e, name: e.name === 'uiSet' ? 'logged' : e.name, args: e.name === 'uiSet' ? { msg: 'up' } : e.args, seq: log.head + 1 + i }
      })
      log.applyUpstream(batch, undefined)
    } else if (r < 0.85 || log.pendingCount === 0) {
      log.commit(
        Array.from({ length: 1 + Math.floor(random() * 3) }, () => randomEvent(random, `me:${++mine}`, 'me', mine)),
        false,
      )
    } else {
      const ids = log.pendingBatch(1 + Math.floor(random() * log.pendingCount)).map((p) => p.id)
      log.confirm(log.head + 1, ids)
    }
  }
  log.setMeta({ clientId: 'me', counter: String(mine), backendId: 'b1', position: '42', schemaHash: oldSchema.hash })
  const bytes = log.db.export()
  log.close()
  return bytes
}

/** How rebuilds were done before rebuilding in place: a fresh database, every event copied into it. */
function rebuildByCopy(bytes: Uint8Array, o: Observed): { log: EventLog; dropped: Map<string, DropReason> } {
  const PAGE = 5000
  const log = createEventLog(SQL, newSchema, o.hooks)
  const old = createEventLog(SQL, { ...newSchema, events: {} } as unknown as Schema, { ...o.hooks, onUnknownEvent() {} }, bytes)
  const dropped = new Map<string, DropReason>()
  const local = old.readLocal()
  const pending = old.readPending()
  const total = old.head + local.length + pending.length
  o.progress.push({ phase: 'rebuild', done: 0, total })
  for (let since = 0; since < old.head; ) {
    const page = old.readConfirmed(since, PAGE)
    if (!page.length) break
    log.applyUpstream(page, undefined) // nothing is pending yet: the confirmed events are applied as they come
    since = page[page.length - 1]!.seq
    o.progress.push({ phase: 'rebuild', done: since, total })
  }
  log.replayLocal(local)
  let done = old.head + local.length
  if (local.length) o.progress.push({ phase: 'rebuild', done, total })
  for (let i = 0; i < pending.length; i += PAGE) {
    const page = pending.slice(i, i + PAGE)
    for (const [id, e] of log.replayPending(page)) dropped.set(id, e)
    o.progress.push({ phase: 'rebuild', done: (done += page.length), total })
  }
  old.close()
  return { log, dropped }
}

/** Every table's rows (rowids too), the schema objects and the counters, after the metadata a snapshot writes. */
function dump(log: EventLog) {
  log.setMeta({ clientId: 'me', counter: '0', backendId: 'b1', position: '42', schemaHash: newSchema.hash })
  const all = (text: string) => log.db.all({ sql: text, params: [] })
  const objects = all("SELECT type, name, tbl_name, sql FROM sqlite_schema WHERE name NOT LIKE 'sqlite_autoindex%' ORDER BY type, name") as {
    type: string
    name: string
    sql: string
  }[]
  const rows: Record<string, unknown[]> = {}
  for (const o of objects) {
    if (o.type !== 'table') continue
    // rowids matter (the undo log restores rows by rowid), except in the key-value metadata
    const rowid = /WITHOUT\s+ROWID/i.test(o.sql) || o.name === '__tl_meta' ? '' : 'rowid AS "rowid()", '
    rows[o.name] = all(`SELECT ${rowid}* FROM "${o.name}" ORDER BY 1`)
  }
  return { objects, rows, head: log.head, pendingCount: log.pendingCount, events: log.events() }
}

const errors = (m: Map<string, DropReason>) =>
  [...m].map(([id, d]) => (d.reason === 'no-longer-applies' ? [id, d.reason, d.error.name, d.error.message] : [id, d.reason, d.by]))
const changeOf = (c: ReturnType<EventLog['applyUpstream']>) => ({
  written: [...c.written].sort(),
  confirmed: [...c.confirmed],
  dropped: errors(c.dropped),
  pendingAfter: c.pendingAfter,
})

describe('rebuild in place after a schema change', () => {
  it('gives the same state, eventlog, undo log and later behaviour as copying every event into a fresh database', () => {
    const seed = process.env.TIDELOG_SEED ? Number(process.env.TIDELOG_SEED) : Math.floor(Math.random() * 2 ** 31)
    const runs = Number(process.env.TIDELOG_RUNS ?? 30)
    console.log(`rebuild in place: seed ${seed}, ${runs} runs (replay with TIDELOG_SEED=${seed})`)
    const random = mulberry32(seed)
    let withPending = 0
    let withDropped = 0
    let withSkipped = 0
    let withUnknown = 0
    // at least `runs` runs, and more (bounded) until the random logs have exercised every case below
    const covered = () => withPending > runs / 3 && withDropped > 0 && withSkipped > 0 && withUnknown > 0
    for (let run = 0; run < runs || (!covered() && run < runs * 10); run++) {
      const bytes = oldSnapshot(random)
      const byCopy = observed()
      const copied = rebuildByCopy(bytes, byCopy)
      const inPlace = observed()
      const booted = bootLog(
        SQL,
        newSchema,
        { snapshot: { position: 42, schemaHash: oldSchema.hash, bytes: bytes.slice() }, records: [], dropped: [] },
        inPlace.hooks,
        (p) => inPlace.progress.push(p),
      )
      const [a, b] = [copied.log, booted.log]
      try {
        expect({ seed, run, ...dump(b) }).toEqual({ seed, run, ...dump(a) })
        expect(errors(booted.dropped)).toEqual(errors(copied.dropped))
        expect(inPlace.progress).toEqual(byCopy.progress)
        expect(inPlace.warnings).toEqual(byCopy.warnings)
        expect(inPlace.unknown).toEqual(byCopy.unknown)
        expect([booted.clientId, booted.counter, booted.backendId, booted.position, booted.snapshotSoon]).toEqual(['me', expect.any(Number), 'b1', 42, true])
        if (a.pendingCount > 0) withPending++
        if (copied.dropped.size > 0) withDropped++
        if (byCopy.warnings.length > 0) withSkipped++
        if (byCopy.unknown.length > 0) withUnknown++

        // the undo log must roll the pending events back alike: a rebase under new upstream events
        const upstream = Array.from({ length: 1 + Math.floor(random() * 6) }, (_, i): ConfirmedEvent => {
          const { local: _local, ...e } = randomEvent(random, `late:${i}`, 'late', i)
          return { ...e, name: e.name === 'uiSet' ? 'remove' : e.name, args: e.name === 'uiSet' ? { id: 'i1' } : e.args, seq: a.head + 1 + i }
        })
        expect(changeOf(b.applyUpstream(upstream, undefined))).toEqual(changeOf(a.applyUpstream(upstream, undefined)))
        expect(dump(b)).toEqual(dump(a))
        // and then confirmations of what is still pending
        const ids = a.pendingBatch(a.pendingCount).map((p) => p.id)
        expect(b.confirm(b.head + 1, ids)).toEqual(a.confirm(a.head + 1, ids))
        expect(dump(b)).toEqual(dump(a))
        expect(inPlace.warnings).toEqual(byCopy.warnings)
      } finally {
        a.close()
        b.close()
      }
    }
    // the random logs must have exercised what matters
    expect(withPending).toBeGreaterThan(runs / 3)
    expect(withDropped).toBeGreaterThan(0)
    expect(withSkipped).toBeGreaterThan(0)
    expect(withUnknown).toBeGreaterThan(0)
  })
})
