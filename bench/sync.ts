/**
 * P10: 10 clients × 1,000 events over WebSocket on loopback to a sync server
 * with the file backend. Runs only when `createSyncServer`, `fileBackend` and
 * `websocketTransport` exist and work; otherwise the row says why not.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
// Node 20 has no global WebSocket; the transport takes the one from 'ws'
import { WebSocket } from 'ws'
import { createStore } from '../src/index.js'
import type { Store, Transport } from '../src/index.js'
import { notRun, now, type ResultLine, type Row } from './harness.js'
import { benchSchema, itemArgs, until, type BenchSchema } from './fixtures.js'

const CLIENTS = 10
const PER_CLIENT = 1000
const TARGET = 'all converged'

interface ServerModule {
  createSyncServer(options: { backend: unknown; port?: number; host?: string }): Promise<{ url: string; close(): Promise<void> }>
  fileBackend(options: { dir: string }): { close(): Promise<void>; stats?: () => { fsyncs?: number } }
}
interface WebSocketModule { websocketTransport(options: { url: string; WebSocket?: unknown }): Transport }

/** Loads a module that another part of the project may not have written yet; a string reason when it cannot. */
async function optional<T>(relative: string, names: string[]): Promise<T | string> {
  try {
    // a URL rather than a literal specifier, so that type-checking the bench never depends on these files existing
    const mod = (await import(new URL(relative, import.meta.url).href)) as Record<string, unknown>
    const missing = names.filter((n) => typeof mod[n] !== 'function')
    return missing.length ? `${relative.replace('../', '')} exports no ${missing.join(', ')}` : (mod as T)
  } catch (error) {
    return `${relative.replace('../', '')} cannot be loaded (${(error as Error).message.split('\n')[0]})`
  }
}

export const P10: Row = {
  id: 'P10',
  what: `sync: ${CLIENTS} clients × ${PER_CLIENT} events, WebSocket, file backend`,
  async run(): Promise<ResultLine[]> {
    const server = await optional<ServerModule>('../src/server/index.ts', ['createSyncServer', 'fileBackend'])
    if (typeof server === 'string') return [notRun('P10', this.what, TARGET, server)]
    const ws = await optional<WebSocketModule>('../transports/websocket.ts', ['websocketTransport'])
    if (typeof ws === 'string') return [notRun('P10', this.what, TARGET, ws)]

    const dir = await mkdtemp(join(tmpdir(), 'tidelog-bench-sync-'))
    const backend = server.fileBackend({ dir })
    let srv: { url: string; close(): Promise<void> } | undefined
    const stores: Store<BenchSchema>[] = []
    try {
      srv = await server.createSyncServer({ backend, port: 0, host: '127.0.0.1' })
      const url = srv.url
      const schema = benchSchema()
      const counts = { pushes: 0, rejected: 0, pulls: 0 }
      // counts what the clients ask, to show how much of the time went to racing each other (rejected pushes -> rebases)
      const counted = (t: Transport): Transport => ({
        connect: (h) => t.connect(h),
        pull: (r) => { counts.pulls++; return t.pull(r) },
        push: async (r) => { counts.pushes++; const res = await t.push(r); if (res.type === 'rejected') counts.rejected++; return res },
        close: () => t.close(),
      })
      for (let c = 0; c < CLIENTS; c++) {
        stores.push(await createStore({ schema, storeId: 'p10', transport: counted(ws.websocketTransport({ url, WebSocket })), dev: false }))
      }
      await until(() => stores.every((s) => s.sync.status.value.state === 'synced'), 'every client to connect', 30_000)
      const fsyncsBefore = backend.stats?.().fsyncs
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
      const fsyncsAfter = backend.stats?.().fsyncs
      const order = (s: Store<BenchSchema>) => s.events().map((e) => e.id).join(',')
      const reference = order(stores[0]!)
      const converged = stores.every((s) => order(s) === reference && s.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n === total)
      const fsyncs = fsyncsBefore !== undefined && fsyncsAfter !== undefined ? fsyncsAfter - fsyncsBefore : undefined
      return [{
        id: 'P10', what: this.what, baseline: null, tidelog: total / seconds, unit: 'events/s', ratio: null, target: TARGET, pass: converged,
        notes: [
          `${converged ? 'all converged' : 'DIVERGED'}: same eventlog order and ${total} rows on every client; ${total} events in ${seconds.toFixed(2)} s end to end`,
          `client requests during the run: ${counts.pushes} pushes, of which ${counts.rejected} rejected (each rejection means a pull and a rebase of that client's pending events), ${counts.pulls} pulls; server and all ${CLIENTS} clients share this process`,
          fsyncs === undefined ? 'server fsyncs per event: not reported (fileBackend has no stats())' : `server fsyncs: ${fsyncs} (${(fsyncs / total).toFixed(3)} per event)`,
        ],
      }]
    } catch (error) {
      return [{ ...notRun('P10', this.what, TARGET, `failed: ${(error as Error).message}`), pass: false }]
    } finally {
      for (const s of stores) await s.close().catch(() => {})
      await srv?.close().catch(() => {})
      await backend.close().catch(() => {})
      await rm(dir, { recursive: true, force: true })
    }
  },
}
