import type { Database, SqlJsStatic, Statement } from 'sql.js'
import initSqlJs from 'sql.js'
import { WasmLoadError } from './errors.js'
import type { SqlFragment } from './sql.js'

/**
 * Options passed to sql.js's init. In a browser, `locateFile` says where the wasm is
 * (it is asked for `sql-wasm.wasm`); by default it is found next to tidelog's build.
 */
export type SqlJsOptions = { locateFile?: (file: string, prefix?: string) => string } & Record<string, unknown>

/** The name of sql.js's browser wasm in tidelog's dist/. */
export const WASM_FILE = 'sql-wasm.wasm'

// Node's sql.js reads its own wasm from disk; browsers fetch it.
const inNode = typeof process === 'object' && typeof process.versions?.node === 'string'

/**
 * Where the wasm is by default: next to this module in dist/. Written as
 * `new URL('<literal>', import.meta.url)` so that Vite and webpack 5 emit the
 * file and rewrite the URL by themselves.
 */
const defaultWasmUrl = () => new URL('./sql-wasm.wasm', import.meta.url).href

const WASM_FIX =
  'Serve node_modules/tidelog/dist/sql-wasm.wasm at that URL (Vite and webpack 5 emit it by themselves; with esbuild or Rollup copy it next to your bundle), or tell tidelog where it is: createStore({ sqlJs: { locateFile: () => "/path/to/sql-wasm.wasm" } }).'

/**
 * Compiles the wasm from its URL: while it downloads where the server says it is wasm
 * (`application/wasm`, so that the browser may also cache the compiled code), else from its bytes
 * once they are checked to be wasm, so that a wrong answer fails with what came back rather than
 * deep inside WebAssembly.
 */
async function compileWasm(options: SqlJsOptions | undefined): Promise<WebAssembly.Module> {
  let url = options?.locateFile ? options.locateFile(WASM_FILE, '') : defaultWasmUrl()
  try {
    url = new URL(url, (globalThis as { location?: { href: string } }).location?.href).href
  } catch {}
  let response: Response
  try {
    response = await fetch(url, { credentials: 'same-origin' })
  } catch (e) {
    throw new WasmLoadError(url, `the request failed (${asError(e).message})`, WASM_FIX, e)
  }
  if (response.ok && typeof WebAssembly.compileStreaming === 'function' && /^application\/wasm\b/i.test(response.headers.get('content-type') ?? '')) {
    try {
      return await WebAssembly.compileStreaming(response)
    } catch (e) {
      throw new WasmLoadError(url, `HTTP ${response.status} application/wasm that does not compile (${asError(e).message})`, WASM_FIX, e)
    }
  }
  const bytes = new Uint8Array(await response.arrayBuffer())
  if (response.ok && bytes[0] === 0 && bytes[1] === 0x61 && bytes[2] === 0x73 && bytes[3] === 0x6d) return WebAssembly.compile(bytes)
  const type = response.headers.get('content-type') || 'no content-type'
  const first = Array.from(bytes.subarray(0, 4), (b) => b.toString(16).padStart(2, '0')).join(' ') || 'nothing'
  const html = response.ok && (/html/i.test(type) || /^\s*</.test(new TextDecoder().decode(bytes.subarray(0, 32))))
  const received =
    `HTTP ${response.status} ${type}, ${bytes.length} bytes starting ${first}` +
    (html ? ' (got HTML, not the wasm: the server answered with a page, such as a dev server answering index.html for unknown paths)' : '')
  throw new WasmLoadError(url, received, WASM_FIX)
}

/** sql.js on a module compiled by compileWasm (its `instantiateWasm` hook; a failed instantiation rejects, never hangs). */
function initCompiled(options: SqlJsOptions | undefined, module: WebAssembly.Module): Promise<SqlJsStatic> {
  let failed!: (error: unknown) => void
  const failure = new Promise<never>((_, reject) => {
    failed = reject
  })
  const instantiateWasm = (imports: WebAssembly.Imports, receive: (instance: WebAssembly.Instance) => void) => {
    WebAssembly.instantiate(module, imports).then(receive, failed)
    return {}
  }
  return Promise.race([initSqlJs({ ...options, instantiateWasm } as Parameters<typeof initSqlJs>[0]), failure])
}

const loaded = new Map<unknown, Promise<SqlJsStatic>>()

/** Loads sql.js once per options object (the default load is shared by all stores). */
export function loadSqlJs(options?: SqlJsOptions): Promise<SqlJsStatic> {
  const key = options ?? 'default'
  let p = loaded.get(key)
  if (!p) {
    p =
      inNode || options?.wasmBinary
        ? initSqlJs(options as Parameters<typeof initSqlJs>[0])
        : compileWasm(options).then((module) => initCompiled(options, module))
    p.catch(() => loaded.delete(key))
    loaded.set(key, p)
  }
  return p
}

export type Row = Record<string, unknown>

/** sql.js sometimes throws strings; give callers real errors. */
export function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e))
}

function bindable(v: unknown): unknown {
  if (v === undefined) return null
  if (typeof v === 'object' && v !== null && !(v instanceof Uint8Array)) return JSON.stringify(v)
  return v
}

/** A statement for `Db`: a fragment, or SQL text without parameters. */
export type Query = SqlFragment | string
const sqlOf = (f: Query) => (typeof f === 'string' ? f : f.sql)

interface Cached {
  stmt: Statement
  columns: string[] | undefined
}

/**
 * A sql.js database with a prepared-statement cache and written-table
 * tracking (through SQLite's update hook). Everything the store does to
 * SQLite goes through here.
 */
export interface Db {
  readonly raw: Database
  /** A statement: a fragment, or SQL text without parameters. */
  run(f: Query): void
  all<T = Row>(f: Query): T[]
  /** First column of every row. */
  column<T = unknown>(f: Query): T[]
  exec(sql: string): void
  /** Tables written since the last call (user tables only), and forgets them. */
  takeWritten(): Set<string>
  /** Turns written-table tracking off for bulk work whose writes nobody observes (a rebuild), and on again. */
  trackWrites(on: boolean): void
  /**
   * Tracks the WITHOUT ROWID tables among `tables` too, which SQLite's update
   * hook never reports: temp triggers (kept out of snapshots) report their
   * writes instead. Call once the schema's tables exist.
   */
  watchTables(tables: readonly string[]): void
  /** Main-database tables a statement reads, from its `OpenRead` root pages (covers views, subqueries, indexes). */
  tablesRead(sql: string): string[]
  /**
   * Prepares the cached statements again after a schema change (DDL makes SQLite re-prepare each
   * one at its next use): at an idle moment, so that the next queries do not pay for it.
   */
  refreshStatements(): void
  export(): Uint8Array
  close(): void
}

const STATEMENT_CACHE = 256

export function openDb(SQL: SqlJsStatic, bytes?: Uint8Array): Db {
  const raw = new SQL.Database(bytes)
  // The database lives in memory (durability is the journal's job): a rollback journal
  // in emscripten's file system would cost a file create/delete per transaction.
  raw.exec('PRAGMA journal_mode = MEMORY; PRAGMA synchronous = OFF; PRAGMA temp_store = MEMORY')
  const cache = new Map<string, Cached>()
  let written = new Set<string>()
  let tracking = true
  const track = (_op: unknown, _db: unknown, table: string) => {
    written.add(table)
  }
  raw.updateHook(track)
  raw.create_function('__tl_written', (table: string) => {
    if (tracking) written.add(table)
    return null
  })

  const prepare = (sql: string): Cached => {
    let c = cache.get(sql)
    if (c) return c
    c = { stmt: raw.prepare(sql), columns: undefined }
    if (cache.size >= STATEMENT_CACHE) {
      // evict the oldest entry (Map keeps insertion order)
      const [oldSql, old] = cache.entries().next().value as [string, Cached]
      cache.delete(oldSql)
      old.stmt.free()
    }
    cache.set(sql, c)
    return c
  }

  const bind = (stmt: Statement, f: Query) => {
    if (typeof f === 'string' || !f.params.length) return
    const params = f.params
    let plain = true
    for (const v of params)
      if (v === undefined || (typeof v === 'object' && v !== null && !(v instanceof Uint8Array))) {
        plain = false
        break
      }
    stmt.bind((plain ? params : params.map(bindable)) as never)
  }

  const db: Db = {
    raw,
    run(f) {
      const { stmt } = prepare(sqlOf(f))
      try {
        bind(stmt, f)
        stmt.step()
      } catch (e) {
        throw asError(e)
      } finally {
        stmt.reset()
      }
    },
    all<T>(f: Query): T[] {
      const c = prepare(sqlOf(f))
      const stmt = c.stmt
      try {
        bind(stmt, f)
        c.columns ??= stmt.getColumnNames()
        const columns = c.columns
        const out: T[] = []
        while (stmt.step()) {
          const values = stmt.get()
          const row: Row = {}
          for (let i = 0; i < columns.length; i++) row[columns[i]!] = values[i]
          out.push(row as T)
        }
        return out
      } catch (e) {
        throw asError(e)
      } finally {
        stmt.reset()
      }
    },
    column<T>(f: Query): T[] {
      const { stmt } = prepare(sqlOf(f))
      try {
        bind(stmt, f)
        const out: T[] = []
        while (stmt.step()) out.push(stmt.get()[0] as T)
        return out
      } catch (e) {
        throw asError(e)
      } finally {
        stmt.reset()
      }
    },
    exec(sql) {
      try {
        raw.exec(sql)
      } catch (e) {
        throw asError(e)
      }
    },
    trackWrites(on) {
      // the hook costs a call into JS (and two string decodes) per written row
      tracking = on
      raw.updateHook(on ? track : null)
    },
    watchTables(tables) {
      const withoutRowid = db.column<string>("SELECT name FROM pragma_table_list WHERE schema = 'main' AND type = 'table' AND wr = 1")
      for (const table of withoutRowid) {
        if (!tables.includes(table)) continue
        const name = table.replace(/"/g, '""')
        const literal = table.replace(/'/g, "''")
        for (const op of ['INSERT', 'UPDATE', 'DELETE']) {
          raw.exec(`CREATE TEMP TRIGGER IF NOT EXISTS "__tl_written_${name}_${op}" AFTER ${op} ON main."${name}" BEGIN SELECT __tl_written('${literal}'); END`)
        }
      }
    },
    takeWritten() {
      const w = written
      written = new Set()
      for (const t of w) if (t.startsWith('__tl_')) w.delete(t)
      return w
    },
    tablesRead(sql) {
      const roots = new Map<number, string>()
      for (const r of db.all<{ rootpage: number; tbl_name: string }>('SELECT rootpage, tbl_name FROM main.sqlite_schema WHERE rootpage > 0'))
        roots.set(r.rootpage, r.tbl_name)
      const tables = new Set<string>()
      const plan = raw.prepare(`EXPLAIN ${sql}`)
      try {
        while (plan.step()) {
          const [, opcode, , p2, p3] = plan.get() as [number, string, number, number, number]
          if ((opcode === 'OpenRead' || opcode === 'ReopenIdx') && p3 === 0) {
            const t = roots.get(p2)
            if (t) tables.add(t)
          }
        }
      } finally {
        plan.free()
      }
      return [...tables]
    },
    refreshStatements() {
      for (const [sql, c] of cache) {
        c.stmt.free()
        try {
          c.stmt = raw.prepare(sql)
          c.columns = undefined
        } catch {
          cache.delete(sql) // prepared again at its next use, which then reports why it fails
        }
      }
    },
    export() {
      return raw.export()
    },
    close() {
      for (const c of cache.values()) c.stmt.free()
      cache.clear()
      raw.close()
    },
  }
  return db
}
