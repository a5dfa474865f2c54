import { readFile, writeFile } from 'node:fs/promises'
import { join } from 'node:path'
import type { SqlJsStatic } from 'sql.js'
import { createStore, sql } from '../src/index.js'
import { loadFileStorage } from './commit.js'
import { type BenchSchema, benchSchema, INSERT_SQL, ITEMS_DDL, ITEMS_INDEX, itemArgs, rawDb, rawFill, sqlJs, storeWithConfirmed } from './fixtures.js'
import { benchDir, check, compare, notRun, now, type ResultLine, type Row, ratioLine } from './harness.js'

const EVENTS = 100_000
const STORE_ID = 'boot'
const POINT_ID = `up-${EVENTS / 2}`

type FileStorageFactory = Extract<Awaited<ReturnType<typeof loadFileStorage>>, { fileStorage: unknown }>['fileStorage']

interface DataSet {
  dir: string
  /** Raw sql.js export of the same 100k rows. */
  rawExport: string
  fileStorage: FileStorageFactory
  /** Schema version of the newest snapshot in `dir` (P6 alternates it). */
  version: number
  buildMs: number
}

let dataSet: Promise<DataSet | { reason: string }> | undefined

/**
 * The boot rows' data set: a file-storage store in a new folder holding `events` confirmed events
 * of `schema`, closed, and `raw.sqlite` beside it, raw sql.js's export of the same state (the
 * schema's tables, the items filled as the store's are).
 */
export async function closedStoreAndRawExport(
  fileStorage: FileStorageFactory,
  options: { prefix: string; storeId: string; events: number; schema: BenchSchema },
): Promise<{ dir: string; storage: ReturnType<FileStorageFactory>; rawExport: string; rawBytes: number }> {
  const dir = await benchDir(options.prefix)
  const storage = fileStorage({ dir })
  const { store } = await storeWithConfirmed(options.schema, options.events, { storeId: options.storeId, storage })
  await store.close()
  const raw = rawDb(await sqlJs())
  for (const [name, ddl] of Object.entries(options.schema.tables)) if (name !== 'items') raw.run(ddl.sql)
  rawFill(raw, 1, options.events + 1, 'up')
  const bytes = raw.export()
  raw.close()
  const rawExport = join(dir, 'raw.sqlite')
  await writeFile(rawExport, bytes)
  return { dir, storage, rawExport, rawBytes: bytes.length }
}

/** Builds (once) a file-storage store holding 100k confirmed events, closed, plus the raw export of the same data. */
function getDataSet(): Promise<DataSet | { reason: string }> {
  dataSet ??= (async () => {
    const fs = await loadFileStorage()
    if ('reason' in fs) return fs
    const t0 = now()
    const { dir, rawExport } = await closedStoreAndRawExport(fs.fileStorage, {
      prefix: 'tidelog-bench-boot-',
      storeId: STORE_ID,
      events: EVENTS,
      schema: benchSchema(),
    })
    return { dir, rawExport, fileStorage: fs.fileStorage, version: 0, buildMs: now() - t0 }
  })()
  return dataSet
}

async function rawLoad(SQL: SqlJsStatic, path: string): Promise<number> {
  const t0 = now()
  const db = new SQL.Database(await readFile(path))
  const stmt = db.prepare('SELECT * FROM items WHERE id = ?')
  stmt.bind([POINT_ID])
  const rows: unknown[] = []
  while (stmt.step()) rows.push(stmt.getAsObject())
  stmt.free()
  const ms = now() - t0
  check(rows.length === 1, 'raw first query finds its row')
  db.close()
  return ms
}

export const P5: Row = {
  id: 'P5',
  what: `cold boot + first query, ${EVENTS / 1000}k events, file storage`,
  async run(): Promise<ResultLine[]> {
    const ds = await getDataSet()
    if ('reason' in ds) return [notRun('P5', this.what, '≤ 4×', ds.reason)]
    const SQL = await sqlJs()
    const schema = benchSchema({ version: ds.version })
    const parts = { open: [] as number[], query: [] as number[] }
    const c = await compare({
      warmup: 1,
      reps: 5,
      baseline: () => rawLoad(SQL, ds.rawExport),
      subject: async () => {
        const t0 = now()
        const store = await createStore({ schema, storeId: STORE_ID, storage: ds.fileStorage({ dir: ds.dir }), dev: false })
        const t1 = now()
        const rows = store.query(sql`SELECT * FROM items WHERE id = ${POINT_ID}`).value
        const t2 = now()
        parts.open.push(t1 - t0)
        parts.query.push(t2 - t1)
        check(rows.length === 1 && store.sync.status.value.head === EVENTS, 'booted store holds the log and finds the row')
        await store.close()
        return t2 - t0
      },
    })
    const med = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!
    return [
      ratioLine('P5', this.what, 'ms', c, 4, [
        `baseline: readFile + new SQL.Database(bytes) + the same point query on a raw export of the same ${EVENTS / 1000}k rows; tidelog: createStore (load snapshot + journal from disk) + store.query().value`,
        `tidelog split: createStore ${med(parts.open).toFixed(1)} ms, first query ${med(parts.query).toFixed(1)} ms (medians); data set built in ${(ds.buildMs / 1000).toFixed(1)} s (pulled through a transport, then closed: one snapshot + the journal)`,
      ]),
    ]
  },
}

function rawReplay(SQL: SqlJsStatic): number {
  const t0 = now()
  const db = new SQL.Database()
  db.run(ITEMS_DDL)
  db.run(ITEMS_INDEX)
  const ins = db.prepare(INSERT_SQL)
  db.run('BEGIN')
  for (let seq = 1; seq <= EVENTS; seq++) {
    const a = itemArgs(seq, 'up')
    ins.run([a.id, a.grp, a.text])
  }
  db.run('COMMIT')
  ins.free()
  const ms = now() - t0
  db.close()
  return ms
}

export const P6: Row = {
  id: 'P6',
  what: `rebuild after a schema change, ${EVENTS / 1000}k events`,
  async run(): Promise<ResultLine[]> {
    const ds = await getDataSet()
    if ('reason' in ds) return [notRun('P6', this.what, '≤ 2×', ds.reason)]
    const SQL = await sqlJs()
    const progress: number[] = []
    const c = await compare({
      warmup: 1,
      reps: 3,
      baseline: () => rawReplay(SQL),
      subject: async () => {
        // every open bumps the schema version, so every open finds a snapshot of another schema and rebuilds
        const version = ds.version === 1 ? 2 : 1
        let calls = 0
        let rebuilt = 0
        const t0 = now()
        const store = await createStore({
          schema: benchSchema({ version }),
          storeId: STORE_ID,
          storage: ds.fileStorage({ dir: ds.dir }),
          dev: false,
          onProgress: (p) => {
            if (p.phase === 'rebuild') {
              calls++
              rebuilt = p.done
            }
          },
        })
        const ms = now() - t0
        ds.version = version
        progress.push(calls)
        check(rebuilt === EVENTS && store.sync.status.value.head === EVENTS, `rebuild reported progress up to ${EVENTS} (got ${rebuilt})`)
        await store.close() // untimed: saves the snapshot of the new schema
        return ms
      },
    })
    return [
      ratioLine('P6', this.what, 'ms', c, 2, [
        `tidelog: createStore with a changed schema version (load old snapshot, rebuild state from its ${EVENTS / 1000}k confirmed events); baseline: new db + DDL + the same ${EVENTS / 1000}k INSERTs in one transaction`,
        `progress: ${progress[0]} 'rebuild' callbacks per rebuild`,
      ]),
    ]
  },
}
