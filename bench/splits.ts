/**
 * Where the time goes in the rows that miss their targets: `node --import tsx
 * bench/splits.ts [rebase|rebuild|boot|query|memory]`. Not part of
 * `npm run bench`; it reaches into internals (eventlog, database) to time the
 * steps one by one, each the median of a few runs, next to the raw equivalent.
 */
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { crc32 } from 'node:zlib'
import { decodeRecords } from '../adapters/file-format.js'
import { openDb } from '../src/database.js'
import { createEventLog } from '../src/eventlog.js'
import type { Schema } from '../src/index.js'
import { createStore, sql } from '../src/index.js'
import { installUndoLog } from '../src/undo-log.js'
import { loadFileStorage } from './commit.js'
import { benchSchema, INSERT_SQL, itemArgs, rawDb, rawFill, sqlJs, storeWithConfirmed, upstreamEvents } from './fixtures.js'
import { median, now } from './harness.js'

const SQL = await sqlJs()
const hooks = { dev: false, onWarning() {}, onUnknownEvent() {} }
const figures = new Map<string, number[]>()
const record = (label: string, ms: number) => figures.set(label, [...(figures.get(label) ?? []), ms])
const time = <T>(label: string, fn: () => T): T => {
  const t0 = now()
  const out = fn()
  record(label, now() - t0)
  return out
}
const report = (title: string) => {
  console.log(`\n${title}`)
  for (const [label, list] of figures) console.log(`${median(list).toFixed(1).padStart(9)} ms  ${label}`)
  figures.clear()
}
const pending = (i: number) => ({ id: `me:${i}`, name: 'itemCreated', args: { ...itemArgs(i, 'local') }, clientId: 'me', sessionId: 's', createdAt: 1 })

async function rebase() {
  for (let k = 0; k < 5; k++) {
    const log = createEventLog(SQL, benchSchema(), hooks)
    log.applyUpstream(upstreamEvents(1, 1000), undefined)
    time('re-apply cost: 1,000 pending events materialized with undo capture (one log.commit)', () =>
      log.commit(
        Array.from({ length: 1000 }, (_, i) => pending(i)),
        false,
      ),
    )
    // the same tables, so the same shadow tables and triggers: this handle rolls back what the commit captured
    const undo = installUndoLog(log.db, ['items'])
    log.db.exec('BEGIN')
    log.db.exec('UPDATE temp.__tl_flag SET capture = 0')
    time('rollback: the undo log restores what the 1,000 pending events wrote (capture off, as in a rebase)', () => undo.rollback())
    log.db.exec('ROLLBACK')
    time('read + JSON.parse the 1,000 pending rows', () => log.readPending())
    time('applyUpstream total (the P7 rebase)', () => log.applyUpstream(upstreamEvents(1001, 100), undefined))
    log.close()
    const db = rawDb(SQL)
    rawFill(db, 1, 1001, 'up')
    const ins = db.prepare(INSERT_SQL)
    time('raw: the same 1,100 INSERTs in one transaction', () => {
      db.run('BEGIN')
      for (let i = 0; i < 1100; i++) {
        const a = itemArgs(i, 'local')
        ins.run([a.id, a.grp, a.text])
      }
      db.run('COMMIT')
    })
    ins.free()
    db.close()
  }
  report('rebase (P7): 1,000 pending under 100 upstream, 1k confirmed')
}

async function rebuild() {
  const src = createEventLog(SQL, benchSchema(), hooks)
  for (let s = 1; s <= 100_000; s += 1000) src.applyUpstream(upstreamEvents(s, 1000), undefined)
  const bytes = src.db.export()
  src.close()
  for (let k = 0; k < 3; k++) {
    const old = time('open the old snapshot', () => createEventLog(SQL, { ...benchSchema(), events: {} } as unknown as Schema, hooks, bytes))
    const pages = time('read 100k confirmed events from it (readConfirmed: SELECT + JSON.parse)', () => {
      const out = []
      for (let since = 0; since < 100_000; ) {
        const p = old.readConfirmed(since, 5000)
        out.push(p)
        since = p[p.length - 1]!.seq
      }
      return out
    })
    const log = createEventLog(SQL, benchSchema({ version: 1 }), hooks)
    time('applyUpstream 100k into the new log, nothing pending (event row + materialize)', () => {
      for (const p of pages) log.applyUpstream(p, undefined)
    })
    log.close()
    old.close()
    for (const withEventRow of [false, true]) {
      const d = openDb(SQL)
      d.exec('CREATE TABLE ev (seq INTEGER PRIMARY KEY, id TEXT, name TEXT, args TEXT, client_id TEXT, session_id TEXT, created_at INTEGER)')
      d.exec('CREATE TABLE items (id TEXT PRIMARY KEY, grp INTEGER NOT NULL, text TEXT NOT NULL); CREATE INDEX items_grp ON items(grp)')
      const ins = d.raw.prepare(INSERT_SQL)
      const ev = d.raw.prepare('INSERT INTO ev VALUES (?, ?, ?, ?, ?, ?, ?)')
      time(
        withEventRow
          ? 'raw: 100k INSERTs + an eventlog row each (what rebuilding into a new db writes)'
          : 'raw: 100k INSERTs in one transaction (the P6 baseline)',
        () => {
          d.exec('BEGIN')
          for (let i = 1; i <= 100_000; i++) {
            const a = itemArgs(i, 'up')
            if (withEventRow) ev.run([i, `other:${i}`, 'itemCreated', JSON.stringify(a), 'other', 'bench', i])
            ins.run([a.id, a.grp, a.text])
          }
          d.exec('COMMIT')
        },
      )
      ins.free()
      ev.free()
      d.close()
    }
  }
  report('rebuild (P6): 100k confirmed events')
}

async function boot() {
  const fs = await loadFileStorage()
  if ('reason' in fs) return console.log(`\nboot (P5): not run: ${fs.reason}`)
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-splits-'))
  try {
    const storage = fs.fileStorage({ dir })
    const { store } = await storeWithConfirmed(benchSchema(), 100_000, { storeId: 'boot', storage })
    await store.close()
    const folder = storage.folderOf('boot')
    const names = await readdir(folder)
    const journal = names.find((n) => n.startsWith('journal-'))!
    const snapshot = names.find((n) => n.startsWith('snapshot-'))!
    const raw = rawDb(SQL)
    rawFill(raw, 1, 100_001, 'up')
    const rawBytes = raw.export()
    raw.close()
    for (let k = 0; k < 5; k++) {
      const jb = await readFile(join(folder, journal))
      time(`fileStorage load: decode the journal (${(jb.length / 2 ** 20).toFixed(1)} MB, every record already in the snapshot)`, () => {
        decodeRecords(jb, { start: 1, name: journal })
      })
      const t0 = now()
      const sb = await readFile(join(folder, snapshot))
      record(
        `read the snapshot file (${(sb.length / 2 ** 20).toFixed(1)} MB; raw export of the same rows: ${(rawBytes.length / 2 ** 20).toFixed(1)} MB)`,
        now() - t0,
      )
      time('crc32 of the snapshot', () => crc32(sb))
      const log = time('createEventLog from the snapshot bytes (new Database + triggers + meta)', () =>
        createEventLog(SQL, benchSchema(), hooks, new Uint8Array(sb.subarray(12 + sb.readUInt32LE(4)))),
      )
      log.close()
      const handle = await fs.fileStorage({ dir }).open('boot')
      const t2 = now()
      await handle.load()
      record('fileStorage handle.load() (reads and decodes every journal segment, then the snapshot)', now() - t2)
      await handle.close()
      const t1 = now()
      const s = await createStore({ schema: benchSchema(), storeId: 'boot', storage: fs.fileStorage({ dir }), dev: false })
      record('createStore total (the P5 subject, without the query)', now() - t1)
      await s.close()
      time('raw: new SQL.Database(export) (the P5 baseline, without readFile)', () => new SQL.Database(rawBytes).close())
    }
    report('boot (P5): 100k confirmed events, file storage')
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

async function query() {
  const schema = benchSchema()
  const store = await createStore({ schema, storeId: 'q', dev: false })
  for (let i = 0; i < 10_000; i += 1000) await store.commit(...Array.from({ length: 1000 }, (_, k) => schema.events.itemCreated(itemArgs(i + k)))).persisted
  const db = openDb(SQL)
  db.exec('CREATE TABLE items (id TEXT PRIMARY KEY, grp INTEGER NOT NULL, text TEXT NOT NULL); CREATE INDEX items_grp ON items(grp)')
  const K = 2000
  for (let k = 0; k < 5; k++) {
    time(`tablesRead (EXPLAIN + sqlite_schema scan), ×${K}`, () => {
      for (let i = 0; i < K; i++) db.tablesRead('SELECT * FROM items WHERE id = ?')
    })
    time(`db.all of the point query (one run through the statement cache), ×${K}`, () => {
      for (let i = 0; i < K; i++) db.all({ sql: 'SELECT * FROM items WHERE id = ?', params: [`item-${i}`] })
    })
    time(`store.query() + first .value (P3b subject), ×${K}`, () => {
      for (let i = 0; i < K; i++) void store.query(sql`SELECT * FROM items WHERE id = ${`item-${i}`}`).value
    })
  }
  db.close()
  await store.close()
  report('new query (P3b): point query by primary key; store.query() = tablesRead + a validation run + the first run')
}

async function memory() {
  const log = createEventLog(SQL, benchSchema(), hooks)
  for (let i = 0; i < 100_000; i++) log.commit([{ ...pending(i), id: `abcdefghij:${i + 1}`, clientId: 'abcdefghij', args: { ...itemArgs(i) } }], false)
  const q = (s: string) => log.db.column<number>({ sql: s, params: [] })[0]!
  const MB = (n: number) => `${(n / 2 ** 20).toFixed(1)} MB`
  const raw = rawDb(SQL)
  rawFill(raw, 0, 100_000)
  console.log('\nmemory (P8): what 100k pending commits keep in the database (no transport: nothing is ever confirmed)')
  console.log(`  database image: ${MB(log.db.export().length)} (raw sql.js, same rows: ${MB(raw.export().length)})`)
  console.log(
    `  __tl_pending payload (ids, names, args JSON): ${MB(q('SELECT sum(length(id) + length(name) + length(args) + length(client_id) + length(session_id)) FROM __tl_pending'))}`,
  )
  console.log(`  __tl_undo payload (undo SQL text): ${MB(q('SELECT sum(length(sql)) FROM __tl_undo'))}`)
  console.log(`  items payload: ${MB(q('SELECT sum(length(id) + length(text) + 1) FROM items'))}`)
  console.log(
    '  (P8 gives its store no storage, so nothing else is kept; memoryStorage() would also keep the newest snapshot, a copy of the image, and the journal records after it as JSON strings)',
  )
  log.close()
  raw.close()
}

const parts: Record<string, () => Promise<void>> = { rebase, rebuild, boot, query, memory }
const wanted = process.argv.slice(2)
for (const [name, fn] of Object.entries(parts)) if (wanted.length === 0 || wanted.includes(name)) await fn()
process.exit(0)
