/**
 * What the B1 pages run on the tidelog side, bundled by the bench into one
 * IIFE (global `TidelogBench`, sql.js's browser build inside, the wasm served
 * beside it): writing the data set once, and the boot a page load times.
 * The raw sql.js page does not load this bundle (bench/browser-boot.ts).
 */
import { indexedDbStorage } from '../adapters/indexeddb.js'
import { loadSqlJs, type SqlJsOptions } from '../src/database.js'
import { createStore } from '../src/index.js'
import { benchSchema, feedTransport, rawDb, rawFill, upstreamEvents } from './fixtures.js'

export interface BootOptions {
  /** IndexedDB database of the store. */
  name: string
  storeId: string
  sideTables: number
  /** URL of sql.js's browser wasm. */
  wasm: string
}

const COUNT = { sql: 'SELECT count(*) AS n FROM items', params: [] as unknown[] }

/** One options object, so that the store and the raw image share one sql.js instance. */
const sqlJsOptions = (wasm: string): SqlJsOptions => ({ locateFile: () => wasm })

/** Plain IndexedDB: puts `value` under `key` in object store 'raw' of database `dbName`. */
function idbPut(dbName: string, key: string, value: unknown): Promise<void> {
  return new Promise((resolve, reject) => {
    const open = indexedDB.open(dbName, 1)
    open.onupgradeneeded = () => open.result.createObjectStore('raw')
    open.onerror = () => reject(open.error)
    open.onsuccess = () => {
      const db = open.result
      const tx = db.transaction('raw', 'readwrite', { durability: 'strict' })
      tx.objectStore('raw').put(value, key)
      tx.oncomplete = () => {
        db.close()
        resolve()
      }
      tx.onerror = () => reject(tx.error)
    }
  })
}

/**
 * Writes the data set: a store in IndexedDB that caught up on `events`
 * confirmed events of another client (pulled through the bench's feed
 * transport, as a synced client has them), closed; and the raw `db.export()`
 * of the same state under key 'image' of database `rawName`.
 */
export async function writeData(
  options: BootOptions & { events: number; rawName: string },
): Promise<{ rawBytes: number; keys: string[]; snapshotBytes: number[] }> {
  const sqlJs = sqlJsOptions(options.wasm)
  const schema = benchSchema({ sideTables: options.sideTables })
  const feed = feedTransport(upstreamEvents(1, options.events))
  const store = await createStore({
    schema,
    storeId: options.storeId,
    storage: indexedDbStorage({ name: options.name }),
    transport: feed.transport,
    sqlJs,
    dev: false,
  })
  await new Promise<void>((resolve) => {
    const stop = store.sync.status.subscribe((s) => {
      if (s.head === options.events && s.state === 'synced') {
        queueMicrotask(() => stop())
        resolve()
      }
    })
  })
  await store.close()
  const SQL = await loadSqlJs(sqlJs)
  const raw = rawDb(SQL)
  for (const [table, ddl] of Object.entries(schema.tables)) if (table !== 'items') raw.run(ddl.sql)
  rawFill(raw, 1, options.events + 1, 'up')
  const image = raw.export()
  raw.close()
  await idbPut(options.rawName, 'image', image)
  // what the store left: its keys, and the size of every snapshot's bytes
  const { keys, snapshotBytes } = await new Promise<{ keys: string[]; snapshotBytes: number[] }>((resolve, reject) => {
    const open = indexedDB.open(options.name)
    open.onerror = () => reject(open.error)
    open.onsuccess = () => {
      const objects = open.result.transaction('tidelog').objectStore('tidelog')
      const req = objects.getAllKeys()
      req.onerror = () => reject(req.error)
      req.onsuccess = () => {
        const all = req.result.map(String)
        const snaps = objects.getAll(IDBKeyRange.bound(`${options.storeId}/s/`, `${options.storeId}/s/\uffff`))
        snaps.onerror = () => reject(snaps.error)
        snaps.onsuccess = () => {
          open.result.close()
          resolve({
            keys: all,
            snapshotBytes: snaps.result.map((v: { bytes: Blob | Uint8Array }) => (v.bytes instanceof Blob ? v.bytes.size : v.bytes.length)),
          })
        }
      }
    }
  })
  return { rawBytes: image.length, keys, snapshotBytes }
}

/** When a resource ending in `suffix` finished downloading (ms from navigation start); -1 when it was not fetched. */
const arrived = (suffix: string) =>
  (performance.getEntriesByType('resource') as PerformanceResourceTiming[]).find((e) => e.name.endsWith(suffix))?.responseEnd ?? -1

/**
 * The timed boot: open the store on IndexedDB and read the count; `ms` is
 * performance.now() at the first rows (0 = navigation start); `script` and
 * `wasm` say when those had arrived.
 */
export async function boot(options: BootOptions): Promise<{ ms: number; n: number; script: number; wasm: number }> {
  const store = await createStore({
    schema: benchSchema({ sideTables: options.sideTables }),
    storeId: options.storeId,
    storage: indexedDbStorage({ name: options.name }),
    sqlJs: sqlJsOptions(options.wasm),
    dev: false,
  })
  const n = store.query<{ n: number }>(COUNT).value[0]!.n
  const ms = performance.now()
  await store.close()
  return { ms, n, script: arrived('/bench.js'), wasm: arrived('.wasm') }
}
