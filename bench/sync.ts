/**
 * P10: 10 clients × 1,000 events over WebSocket on loopback, in the same run:
 * to one sync server with the file backend, and to two sync servers (half the
 * clients on each) sharing one PostgreSQL database (postgresBackend, a fresh
 * schema dropped afterwards). Each line also times the catch-up of a new
 * client on a log of 100k events (the file line over WebSocket and HTTP). Runs only when the server modules,
 * `websocketTransport` and (for the PostgreSQL line) a PostgreSQL server at
 * TIDELOG_BENCH_POSTGRES (default postgres://postgres@127.0.0.1:5432/test)
 * exist and work; otherwise the line says why not.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// Node 20 has no global WebSocket; the transport takes the one from 'ws'
import { WebSocket } from 'ws'
import type { PendingEvent, Store, SyncBackend, Transport } from '../src/index.js'
import { createStore } from '../src/index.js'
import { type BenchSchema, benchSchema, itemArgs, until } from './fixtures.js'
import { notRun, now, type ResultLine, type Row } from './harness.js'

const CLIENTS = 10
const PER_CLIENT = 1000
const TARGET = 'all converged'

const CATCH_UP = 100_000
const POSTGRES = process.env.TIDELOG_BENCH_POSTGRES ?? 'postgres://postgres@127.0.0.1:5432/test'

type Backend = SyncBackend & { stats?: () => Record<string, unknown> }
export interface ServerModule {
  createSyncServer(options: { backend: unknown; port?: number; host?: string }): Promise<{ url: string; close(): Promise<void> }>
  fileBackend(options: { dir: string }): Backend
  memoryBackend?(): Backend
  postgresBackend?(connection: { connectionString: string }, options: { schema: string }): Backend
}
export interface WebSocketModule {
  websocketTransport(options: { url: string; WebSocket?: unknown }): Transport
}
export interface HttpModule {
  httpTransport(options: { url: string }): Transport
}

/** Loads a module that another part of the project may not have written yet; a string reason when it cannot. */
export async function optional<T>(relative: string, names: string[]): Promise<T | string> {
  try {
    // a URL rather than a literal specifier, so that type-checking the bench never depends on these files existing
    const mod = (await import(new URL(relative, import.meta.url).href)) as Record<string, unknown>
    const missing = names.filter((n) => typeof mod[n] !== 'function')
    return missing.length ? `${relative.replace('../', '')} exports no ${missing.join(', ')}` : (mod as T)
  } catch (error) {
    return `${relative.replace('../', '')} cannot be loaded (${(error as Error).message.split('\n')[0]})`
  }
}

/** One measured run: 10 clients split over `urls`, committing side by side until all converge. */
async function syncRun(urls: string[], ws: WebSocketModule) {
  const schema = benchSchema()
  const stores: Store<BenchSchema>[] = []
  const counts = { pushes: 0, rejected: 0, pulls: 0 }
  // counts what the clients ask, to show how much of the time went to racing each other (rejected pushes -> rebases)
  const counted = (t: Transport): Transport => ({
    connect: (h) => t.connect(h),
    pull: (r) => {
      counts.pulls++
      return t.pull(r)
    },
    push: async (r) => {
      counts.pushes++
      const res = await t.push(r)
      if (res.type === 'rejected') counts.rejected++
      return res
    },
    close: () => t.close(),
  })
  try {
    for (let c = 0; c < CLIENTS; c++) {
      stores.push(
        await createStore({ schema, storeId: 'p10', transport: counted(ws.websocketTransport({ url: urls[c % urls.length]!, WebSocket })), dev: false }),
      )
    }
    await until(() => stores.every((s) => s.sync.status.value.state === 'synced'), 'every client to connect', 30_000)
    Object.assign(counts, { pushes: 0, rejected: 0, pulls: 0 })
    const total = CLIENTS * PER_CLIENT
    const t0 = now()
    // clients commit side by side, one event per commit, yielding so that sync runs while they write
    for (let i = 0; i < PER_CLIENT; i += 10) {
      stores.forEach((s, c) => {
        for (let k = i; k < i + 10; k++) s.commit(schema.events.itemCreated(itemArgs(c * PER_CLIENT + k)))
      })
      await new Promise((r) => setImmediate(r))
    }
    await until(() => stores.every((s) => s.sync.status.value.pending === 0 && s.sync.status.value.head === total), 'every client to converge', 120_000)
    const seconds = (now() - t0) / 1000
    const order = (s: Store<BenchSchema>) =>
      s
        .events()
        .map((e) => e.id)
        .join(',')
    const reference = order(stores[0]!)
    const converged = stores.every(
      (s) => order(s) === reference && s.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n === total,
    )
    return { total, seconds, converged, counts }
  } finally {
    for (const s of stores) await s.close().catch(() => {})
  }
}

/** Fills storeId up to `count` events of another client, straight through the backend, 1,000 per push (a no-op once it holds them). */
export async function seedLog(backend: SyncBackend, storeId: string, count: number): Promise<void> {
  for (let head = (await backend.pull(storeId, 0, 1)).head; head < count; head += 1000) {
    const events: PendingEvent[] = Array.from({ length: 1000 }, (_, i) => ({
      id: `seed:${head + i + 1}`,
      name: 'itemCreated',
      args: itemArgs(head + i, 'seed') as unknown as PendingEvent['args'],
      clientId: 'seed',
      sessionId: 's',
      createdAt: 0,
    }))
    const answer = await backend.push(storeId, { parentSeq: head, events })
    if (answer.type !== 'pushed') throw new Error(`seeding the catch-up log was answered ${answer.type} at ${head}`)
  }
}

/**
 * Fills storeId with CATCH_UP events straight through the backend (once per
 * storeId), then times a new client reaching its head over `transport`.
 */
async function catchUp(backend: SyncBackend, url: string, ws: WebSocketModule, transport?: Transport, storeId = 'p10-catch-up'): Promise<number> {
  await seedLog(backend, storeId, CATCH_UP)
  const t0 = now()
  const store = await createStore({ schema: benchSchema(), storeId, transport: transport ?? ws.websocketTransport({ url, WebSocket }), dev: false })
  try {
    await until(() => store.sync.status.value.head === CATCH_UP && store.sync.status.value.state === 'synced', 'the new client to catch up', 300_000)
    const seconds = (now() - t0) / 1000
    const n = store.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n
    if (n !== CATCH_UP) throw new Error(`the caught-up client holds ${n} rows, not ${CATCH_UP}`)
    return seconds
  } finally {
    await store.close()
  }
}

const FILE_WHAT = `sync: ${CLIENTS} clients × ${PER_CLIENT} events, WebSocket, file backend, 1 server`
const PG_WHAT = `sync: ${CLIENTS} clients × ${PER_CLIENT} events, WebSocket, PostgreSQL, 2 servers`

export const P10: Row = {
  id: 'P10',
  what: FILE_WHAT,
  async run(): Promise<ResultLine[]> {
    const server = await optional<ServerModule>('../src/server/index.ts', ['createSyncServer', 'fileBackend'])
    if (typeof server === 'string') return [notRun('P10', FILE_WHAT, TARGET, server)]
    const ws = await optional<WebSocketModule>('../transports/websocket.ts', ['websocketTransport'])
    if (typeof ws === 'string') return [notRun('P10', FILE_WHAT, TARGET, ws)]
    return [await fileLine(server, ws), await postgresLine(server, ws)]
  },
}

/** A P10 line: events per second end to end, passing when every client converged. */
const p10Line = (what: string, run: Awaited<ReturnType<typeof syncRun>>, notes: string[]): ResultLine => ({
  id: 'P10',
  what,
  baseline: null,
  tidelog: run.total / run.seconds,
  unit: 'events/s',
  ratio: null,
  target: TARGET,
  pass: run.converged,
  notes,
})

async function fileLine(server: ServerModule, ws: WebSocketModule): Promise<ResultLine> {
  const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-sync-'))
  const backend = server.fileBackend({ dir })
  let srv: { url: string; close(): Promise<void> } | undefined
  try {
    srv = await server.createSyncServer({ backend, port: 0, host: '127.0.0.1' })
    const fsyncsBefore = backend.stats?.().fsyncs as number | undefined
    const run = await syncRun([srv.url], ws)
    const fsyncsAfter = backend.stats?.().fsyncs as number | undefined
    const fsyncs = fsyncsBefore !== undefined && fsyncsAfter !== undefined ? fsyncsAfter - fsyncsBefore : undefined
    const catchUpSeconds = await catchUp(backend, srv.url, ws)
    const http = await optional<HttpModule>('../transports/http.ts', ['httpTransport'])
    const httpCatchUp = typeof http === 'string' ? http : await catchUp(backend, srv.url, ws, http.httpTransport({ url: srv.url }))
    return p10Line(FILE_WHAT, run, [
      `file: ${run.converged ? 'all converged' : 'DIVERGED'}: same eventlog order and ${run.total} rows on every client; ${run.total} events in ${run.seconds.toFixed(2)} s end to end`,
      `file: client requests during the run: ${run.counts.pushes} pushes, of which ${run.counts.rejected} rejected (each rejection means a pull and a rebase of that client's pending events), ${run.counts.pulls} pulls; server and all ${CLIENTS} clients share this process`,
      fsyncs === undefined
        ? 'file: server fsyncs per event: not reported (fileBackend has no stats())'
        : `file: server fsyncs: ${fsyncs} (${(fsyncs / run.total).toFixed(3)} per event)`,
      `file: a new client caught up on ${CATCH_UP} events in ${catchUpSeconds.toFixed(2)} s over WebSocket, ${typeof httpCatchUp === 'string' ? `not over HTTP (${httpCatchUp})` : `${httpCatchUp.toFixed(2)} s over HTTP`}`,
    ])
  } catch (error) {
    return { ...notRun('P10', FILE_WHAT, TARGET, `failed: ${(error as Error).message}`), pass: false }
  } finally {
    await srv?.close().catch(() => {})
    await backend.close().catch(() => {})
    await rm(dir, { recursive: true, force: true })
  }
}

async function postgresLine(server: ServerModule, ws: WebSocketModule): Promise<ResultLine> {
  if (typeof server.postgresBackend !== 'function') return notRun('P10', PG_WHAT, TARGET, 'src/server/index.ts exports no postgresBackend')
  const schema = `tl_bench_${process.pid}_${Date.now().toString(36)}`
  const backends = [0, 1].map(() => server.postgresBackend!({ connectionString: POSTGRES }, { schema }))
  const servers: { url: string; close(): Promise<void> }[] = []
  try {
    try {
      await backends[0]!.pull('p10', 0, 1)
    } catch (error) {
      return notRun('P10', PG_WHAT, TARGET, `no PostgreSQL at ${POSTGRES} (${(error as Error).message.split('\n')[0]})`)
    }
    for (const backend of backends) servers.push(await server.createSyncServer({ backend, port: 0, host: '127.0.0.1' }))
    const stat = (key: string) => backends.reduce((sum, b) => sum + Number(b.stats?.()[key] ?? 0), 0)
    const before = { queries: stat('queries'), pushes: stat('pushes') }
    const run = await syncRun(
      servers.map((s) => s.url),
      ws,
    )
    const queries = stat('queries') - before.queries
    const pushes = stat('pushes') - before.pushes
    // one push alone, to tell the statements of an accepted push from those of everything around it
    const single = stat('queries')
    const alone = await backends[0]!.push('p10-alone', {
      parentSeq: 0,
      events: [
        { id: 'alone:1', name: 'itemCreated', args: itemArgs(0, 'alone') as unknown as PendingEvent['args'], clientId: 'alone', sessionId: 's', createdAt: 0 },
      ],
    })
    if (alone.type !== 'pushed') throw new Error(`a push on a new store was answered ${alone.type}`)
    const perPush = stat('queries') - single
    const catchUpSeconds = await catchUp(backends[0]!, servers[1]!.url, ws)
    return p10Line(PG_WHAT, run, [
      `postgres: ${run.converged ? 'all converged' : 'DIVERGED'}: same eventlog order and ${run.total} rows on every client, half of them on each server; ${run.total} events in ${run.seconds.toFixed(2)} s end to end`,
      `postgres: client requests during the run: ${run.counts.pushes} pushes, of which ${run.counts.rejected} rejected, ${run.counts.pulls} pulls; both servers and all ${CLIENTS} clients share this process, PostgreSQL on the same machine`,
      `postgres: database round trips: ${queries} statements for ${pushes} accepted pushes and everything else (pulls, rejected pushes, listener) = ${(queries / pushes).toFixed(1)} per accepted push; an accepted push alone is ${perPush} round trips`,
      `postgres: a new client on the other server caught up on ${CATCH_UP} events in ${catchUpSeconds.toFixed(2)} s`,
    ])
  } catch (error) {
    return { ...notRun('P10', PG_WHAT, TARGET, `failed: ${(error as Error).message}`), pass: false }
  } finally {
    for (const s of servers) await s.close().catch(() => {})
    await backends[0]!.close().catch(() => {})
    await backends[1]!.close().catch(() => {})
    await dropSchema(schema).catch(() => {})
  }
}

/** Drops the bench's schema through pg directly (the backend has no drop, on purpose). */
async function dropSchema(schema: string): Promise<void> {
  const pg = (await import('pg')).default
  const client = new pg.Client({ connectionString: POSTGRES })
  await client.connect()
  try {
    await client.query(`DROP SCHEMA IF EXISTS "${schema}" CASCADE`)
  } finally {
    await client.end()
  }
}
