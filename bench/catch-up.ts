/**
 * P14: a new client catching up on 100k events from a real sync server on
 * loopback (createSyncServer, memory and file backend), over WebSocket and
 * over HTTP, against downloading the same pages raw and replaying them into
 * raw sql.js in the same run.
 *
 * tidelog: createStore with websocketTransport / httpTransport (memory
 * storage), timed from createStore until status says synced at head 100k.
 * Raw: the same pulls (limit 1,000, one after the other, as the engine asks),
 * on a plain `ws` WebSocket or plain fetch POST /pull, each answer
 * JSON.parse'd and its events replayed at once with the materializer's INSERT,
 * all in one transaction. A third side (WebSocket only) also writes, per
 * event, a row into a log table shaped like the store's `__tl_events`: the
 * floor of a client that keeps the log it syncs.
 */
import type { Database, SqlJsStatic } from 'sql.js'
import { WebSocket } from 'ws'
import type { ConfirmedEvent, PullResponse, Transport } from '../src/index.js'
import { createStore } from '../src/index.js'
import { benchSchema, INSERT_SQL, LOG_DDL, LOG_INSERT_SQL, rawDb, sqlJs } from './fixtures.js'
import { benchDir, check, interleave, median, notRun, now, pair, type ResultLine, type Row, type Run, ratioLine } from './harness.js'
import { type HttpModule, optional, type ServerModule, seedLog, type WebSocketModule } from './sync.js'

const EVENTS = 100_000
const PAGE = 1000
const STORE_ID = 'p14'
const TARGET = '≤ 2×'
const DEADLINE_MS = 300_000
const WHAT = `new client catching up on ${EVENTS / 1000}k events`

type Pull = (since: number) => Promise<PullResponse>
type Server = { url: string; close(): Promise<void> }

/** Replays pulled events into raw sql.js as they come: the state INSERT, and with `log` a log row per event. */
function rawReplayer(SQL: SqlJsStatic, log: boolean) {
  const db: Database = rawDb(SQL)
  if (log) db.run(LOG_DDL)
  const ins = db.prepare(INSERT_SQL)
  const logIns = log ? db.prepare(LOG_INSERT_SQL) : undefined
  db.run('BEGIN')
  return {
    apply(events: ConfirmedEvent[]) {
      for (const e of events) {
        const a = e.args as { id: string; grp: number; text: string }
        logIns?.run([e.id, e.name, JSON.stringify(e.args), e.clientId, e.sessionId, e.createdAt])
        ins.run([a.id, a.grp, a.text])
      }
    },
    finish(): number {
      db.run('COMMIT')
      ins.free()
      logIns?.free()
      const n = db.exec('SELECT count(*) FROM items')[0]!.values[0]![0] as number
      db.close()
      return n
    },
  }
}

/** Pulls page after page from 0 until `more` is false, replaying each page raw as it comes. */
async function rawCatchUp(SQL: SqlJsStatic, pull: Pull, log: boolean): Promise<void> {
  const replay = rawReplayer(SQL, log)
  let since = 0
  let page: PullResponse
  do {
    page = await pull(since)
    replay.apply(page.events)
    since += page.events.length
  } while (page.more && page.events.length)
  const n = replay.finish()
  check(since === EVENTS && n === EVENTS, `the raw client pulled and wrote ${EVENTS} events (got ${since} pulled, ${n} rows)`)
}

/** What the latest raw catch-up received (message or body bytes), to report the size of the download. */
const received = { bytes: 0 }

/** Raw WebSocket: one `ws` connection to /sync, pull messages one after the other, answers JSON.parse'd. */
async function rawWebSocket(SQL: SqlJsStatic, url: string, log: boolean): Promise<number> {
  received.bytes = 0
  const t0 = now()
  const socket = new WebSocket(`${url.replace(/^http/, 'ws')}/sync?storeId=${STORE_ID}`)
  await new Promise<void>((resolve, reject) => {
    socket.once('open', () => resolve())
    socket.once('error', reject)
  })
  let waiting: { rid: number; resolve(p: PullResponse): void; reject(e: Error): void } | undefined
  socket.on('message', (data: Buffer) => {
    received.bytes += data.length
    const message = JSON.parse(data.toString())
    if (waiting && message.rid === waiting.rid) {
      const w = waiting
      waiting = undefined
      if (message.type === 'pulled') w.resolve(message)
      else w.reject(new Error(`a raw pull was answered ${JSON.stringify(message).slice(0, 200)}`))
    }
  })
  let rid = 0
  const pull: Pull = (since) =>
    new Promise((resolve, reject) => {
      waiting = { rid: ++rid, resolve, reject }
      socket.send(JSON.stringify({ v: 1, rid, type: 'pull', storeId: STORE_ID, since, limit: PAGE }))
    })
  try {
    await rawCatchUp(SQL, pull, log)
    return now() - t0
  } finally {
    socket.close()
  }
}

/** Raw HTTP: fetch POST /pull one after the other, each body read as text and JSON.parse'd (as httpTransport reads it). */
async function rawHttp(SQL: SqlJsStatic, url: string): Promise<number> {
  received.bytes = 0
  const t0 = now()
  const pull: Pull = async (since) => {
    const response = await fetch(`${url}/pull?storeId=${STORE_ID}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ v: 1, type: 'pull', storeId: STORE_ID, since, limit: PAGE }),
    })
    const text = await response.text()
    received.bytes += text.length
    const message = JSON.parse(text)
    if (message.type !== 'pulled') throw new Error(`a raw HTTP pull was answered ${text.slice(0, 200)}`)
    return message
  }
  await rawCatchUp(SQL, pull, false)
  return now() - t0
}

/** tidelog: a fresh store (no storage) on `transport`, from createStore until synced at the head. */
async function tidelogCatchUp(transport: Transport): Promise<number> {
  const t0 = now()
  const store = await createStore({ schema: benchSchema(), storeId: STORE_ID, transport, dev: false })
  try {
    // woken by the status signal rather than polled, so that waiting costs the client nothing
    let stop = () => {}
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`the new client did not catch up within ${DEADLINE_MS} ms`)), DEADLINE_MS)
      stop = store.sync.status.subscribe((s) => {
        if (s.head === EVENTS && s.state === 'synced') {
          clearTimeout(timer)
          resolve()
        }
      })
    }).finally(() => stop())
    const ms = now() - t0
    const n = store.query<{ n: number }>({ sql: 'SELECT count(*) AS n FROM items', params: [] }).value[0]!.n
    check(n === EVENTS, `the caught-up client holds ${EVENTS} rows (found ${n})`)
    return ms
  } finally {
    await store.close()
  }
}

async function lines(
  label: string,
  SQL: SqlJsStatic,
  server: Server,
  ws: WebSocketModule,
  http: HttpModule | string,
  seedMs: number,
  ids: [string, string],
): Promise<ResultLine[]> {
  const url = server.url
  const sides: Record<string, Run> = {
    rawWs: () => rawWebSocket(SQL, url, false),
    floorWs: () => rawWebSocket(SQL, url, true),
    tidelogWs: () => tidelogCatchUp(ws.websocketTransport({ url, WebSocket })),
  }
  if (typeof http !== 'string') {
    sides.rawHttp = () => rawHttp(SQL, url)
    sides.tidelogHttp = () => tidelogCatchUp(http.httpTransport({ url }))
  }
  const r = await interleave(sides, { warmup: 1, reps: 5 })
  const mb = received.bytes / 2 ** 20
  const floor = pair(r.rawWs!, r.floorWs!)
  const wsLine = ratioLine(`P14${ids[0]}`, `${WHAT}, WebSocket, ${label} backend`, 'ms', pair(r.rawWs!, r.tidelogWs!), 2, [
    `${label}: tidelog = createStore(websocketTransport, no storage) until synced at head ${EVENTS}; baseline = a plain ws WebSocket sending the same pulls (limit ${PAGE}, one after the other), JSON.parse of every answer and its events' INSERTs into raw sql.js, one transaction; about ${mb.toFixed(1)} MB of JSON per catch-up; the server shares this process`,
    `${label}: floor with a log row per event (raw sql.js, a row shaped like __tl_events's besides the state row): ${floor.subject.toFixed(0)} ms, ${floor.ratio.toFixed(2)}× the baseline; tidelog is ${median(r.tidelogWs!.map((x, i) => x / r.floorWs![i]!)).toFixed(2)}× the floor${seedMs ? `; log seeded with ${EVENTS} events through the backend in ${(seedMs / 1000).toFixed(1)} s` : ''}`,
  ])
  if (typeof http === 'string') return [wsLine, notRun(`P14${ids[1]}`, `${WHAT}, HTTP, ${label} backend`, TARGET, http)]
  const httpLine = ratioLine(`P14${ids[1]}`, `${WHAT}, HTTP, ${label} backend`, 'ms', pair(r.rawHttp!, r.tidelogHttp!), 2, [
    `${label}: tidelog = createStore(httpTransport, no storage) until synced at head ${EVENTS}; baseline = fetch POST /pull with the same pulls, one after the other, text + JSON.parse of every answer and its events' INSERTs into raw sql.js, one transaction`,
  ])
  return [wsLine, httpLine]
}

export const P14: Row = {
  id: 'P14',
  what: `${WHAT} over WebSocket / HTTP`,
  async run(): Promise<ResultLine[]> {
    const server = await optional<ServerModule>('../src/server/index.ts', ['createSyncServer', 'fileBackend', 'memoryBackend'])
    if (typeof server === 'string') return [notRun('P14', this.what, TARGET, server)]
    const ws = await optional<WebSocketModule>('../transports/websocket.ts', ['websocketTransport'])
    if (typeof ws === 'string') return [notRun('P14', this.what, TARGET, ws)]
    const http = await optional<HttpModule>('../transports/http.ts', ['httpTransport'])
    const SQL = await sqlJs()
    const out: ResultLine[] = []
    const backends = [
      { label: 'memory', ids: ['a', 'b'] as [string, string], make: async () => server.memoryBackend!() },
      { label: 'file', ids: ['c', 'd'] as [string, string], make: async () => server.fileBackend({ dir: await benchDir('tidelog-bench-p14-') }) },
    ]
    for (const { label, ids, make } of backends) {
      const backend = await make()
      let srv: Server | undefined
      try {
        const s0 = now()
        await seedLog(backend, STORE_ID, EVENTS)
        const seedMs = now() - s0
        srv = await server.createSyncServer({ backend, port: 0, host: '127.0.0.1' })
        out.push(...(await lines(label, SQL, srv, ws, http, seedMs, ids)))
      } finally {
        await srv?.close().catch(() => {})
        await backend.close().catch(() => {})
      }
    }
    return out
  },
}
