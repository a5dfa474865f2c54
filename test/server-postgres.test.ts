/**
 * Two `tidelog serve --postgres` processes on one database, behind a
 * stand-in load balancer (one failover proxy per client, home server first):
 * a push on one server reaches a client of the other live; clients on both
 * commit at random with offline periods, one server is killed with SIGKILL
 * mid-stream, its clients carry on through the other, no event answered
 * `pushed` is lost and every client converges to the one order in PostgreSQL.
 *
 * The servers run bin/tidelog.js, which loads dist/ (built by the global setup
 * when this file is selected and dist/ is stale).
 * Replay a run: TIDELOG_PG_E2E_SEED=<seed> npx vitest run test/server-postgres.test.ts
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { fileURLToPath } from 'node:url'
import { createStore, type Store, sql, type Transport } from 'tidelog'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterAll, afterEach, describe, expect, inject, it } from 'vitest'
import { WebSocket } from 'ws'
import { postgresBackend } from '../src/backends/postgres.js'
import { failoverProxy } from './fixtures/failover-proxy.js'
import { dropSchema, freshSchemaName, POSTGRES_URL, postgresUnavailable } from './helpers/postgres.js'
import { mulberry32 } from './helpers/random.js'
import { freshStoreId, type TodoSchema, todoSchema } from './helpers/todo-schema.js'
import { backendLog, logOf, onChange, waitFor, within } from './helpers/wait.js'

const unavailable = await postgresUnavailable()
if (unavailable) console.warn(`server-postgres.test.ts: skipping: ${unavailable}`)

const root = fileURLToPath(new URL('..', import.meta.url))
const SYNC = { minBackoffMs: 5, maxBackoffMs: 50 }
const { todoCreated, kvSet } = todoSchema.events
const schema = freshSchemaName('tl_serve')
const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})
afterAll(async () => {
  if (!unavailable) await dropSchema(schema)
})

interface Served {
  proc: ChildProcess
  port: number
  url: string
  exited: Promise<unknown[]>
}

/** `tidelog serve --postgres` on a free port; resolves once it listens. */
async function serve(): Promise<Served> {
  const proc = spawn(process.execPath, [`${root}bin/tidelog.js`, 'serve', '--port', '0', '--postgres', POSTGRES_URL, '--schema', schema], {
    cwd: root,
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  let stderr = ''
  proc.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk))
  const exited = once(proc, 'exit')
  const url = await within(
    new Promise<string>((resolve, reject) => {
      let out = ''
      proc.stdout!.setEncoding('utf8').on('data', (chunk: string) => {
        out += chunk
        const m = /serving (http:\/\/\S+)/.exec(out)
        if (m) resolve(m[1]!)
      })
      void exited.then(([code, signal]) => reject(new Error(`tidelog serve exited before listening (${code ?? signal}): ${stderr}`)))
    }),
    'tidelog serve --postgres to listen',
  )
  const served = { proc, port: Number(new URL(url).port), url, exited }
  cleanups.push(() => {
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL')
    return exited
  })
  return served
}

async function client(name: string, storeId: string, ports: number[], kind: 'ws' | 'http') {
  const proxy = await failoverProxy(ports)
  cleanups.push(() => proxy.close())
  const transport: Transport = kind === 'ws' ? websocketTransport({ url: proxy.url, WebSocket }) : httpTransport({ url: proxy.url })
  const store = await createStore({ schema: todoSchema, storeId, transport, sync: SYNC })
  cleanups.push(() => store.close())
  return { name, store, proxy }
}

describe.skipIf(unavailable)('tidelog serve --postgres, two servers on one database', () => {
  it('needs dist/ (bin/tidelog.js loads it)', () => {
    const dist = inject('tidelogDist')
    expect(dist.ok, dist.ok ? '' : dist.error).toBe(true)
  })

  it('tidelog migrate creates the tables ahead and says at which version; serve refuses an unreachable database at start', async () => {
    const run = async (args: string[]) => {
      const proc = spawn(process.execPath, [`${root}bin/tidelog.js`, ...args], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
      let out = ''
      proc.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c))
      proc.stderr!.setEncoding('utf8').on('data', (c: string) => (out += c))
      const [code] = await within(once(proc, 'exit'), `tidelog ${args[0]} to exit`)
      return { code, out }
    }
    const migrated = await run(['migrate', '--postgres', POSTGRES_URL, '--schema', schema])
    expect(migrated.out).toMatch(new RegExp(`schema ${schema} of .* is at version 1 \\(backendId [0-9a-z]+\\)`))
    expect(migrated.code).toBe(0)
    const refused = await run(['serve', '--port', '0', '--postgres', 'postgres://nobody:secret@127.0.0.1:1/none'])
    expect(refused.code).toBe(1)
    expect(refused.out).toMatch(/cannot open PostgreSQL at postgres:\/\/nobody:\*\*\*@127\.0\.0\.1:1\/none/)
    expect(refused.out).not.toContain('secret')
  })

  it('pushes through server A reach a WebSocket client of server B live', async () => {
    const [a, b] = await Promise.all([serve(), serve()])
    const storeId = freshStoreId('pg-live')
    const onA = await client('onA', storeId, [a.port], 'http')
    const onB = await client('onB', storeId, [b.port], 'ws')
    await waitFor(onB.store.sync.status, (s) => s.state === 'synced', 'the client of B to be synced')
    // the WebSocket client of B only listens: the event can only come by B's live stream, woken by NOTIFY
    await onA.store.commit(todoCreated({ id: 'from-a', text: 'pushed through A' })).confirmed
    await waitFor(
      onB.store.query(sql`SELECT count(*) AS n FROM todos WHERE id = 'from-a'`),
      (rows) => (rows as { n: number }[])[0]?.n === 1,
      'the event pushed through A on the client of B',
    )
    // and a server stops cleanly on SIGTERM, closing its pool
    b.proc.kill('SIGTERM')
    expect((await within(b.exited, 'tidelog serve to stop'))[0]).toBe(0)
  })

  it('converges to one order with random commits and offline periods, and loses no pushed event when a server is killed', async () => {
    const seed = Number(process.env.TIDELOG_PG_E2E_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`server-postgres: seed ${seed} (replay with TIDELOG_PG_E2E_SEED=${seed})`)
    const random = mulberry32(seed)
    const [a, b] = await Promise.all([serve(), serve()])
    const storeId = freshStoreId('pg-e2e')
    const clients = [
      await client('a-ws', storeId, [a.port, b.port], 'ws'),
      await client('a-http', storeId, [a.port, b.port], 'http'),
      await client('b-ws', storeId, [b.port, a.port], 'ws'),
      await client('b-http', storeId, [b.port, a.port], 'http'),
    ]
    const committed: string[] = []
    const confirmed = new Map<string, number>()
    const failures: string[] = []
    const progress = onChange()
    let running = true
    const loops = clients.map(async ({ name, store, proxy }) => {
      for (let n = 0; running; n++) {
        if (random() < 0.05) {
          // offline for a while, committing all the same
          proxy.setOffline(true)
          for (let k = 0; k < 3; k++, n++) committed.push(commit(name, store, n))
          await delay(10 + Math.floor(random() * 40))
          proxy.setOffline(false)
        }
        committed.push(commit(name, store, n))
        await delay(3 + Math.floor(random() * 8))
      }
    })
    function commit(name: string, store: Store<TodoSchema>, n: number): string {
      const receipt = store.commit(n % 4 === 3 ? kvSet({ k: 'last', v: `${name}:${n}` }) : todoCreated({ id: `${name}-${n}`, text: `${name} ${n}` }))
      const { id } = receipt.event
      receipt.confirmed.then(
        (seq) => {
          confirmed.set(id, seq!)
          progress.changed()
        },
        (error) => failures.push(`${id}: ${(error as Error).message}`),
      )
      return id
    }
    /** Resolves once `pred` holds, checked on every confirmation (no polling). */
    const until = progress.until

    const started = performance.now()
    const killAt = 30 + Math.floor(random() * 40)
    await until(() => confirmed.size >= killAt, `${killAt} confirmations before the kill`)
    await delay(Math.floor(random() * 15)) // anywhere inside a push
    a.proc.kill('SIGKILL')
    await a.exited
    const atKill = confirmed.size
    const killedAt = performance.now()
    // A's clients carry on through B
    const confirmedBy = (c: (typeof clients)[number]) => [...confirmed.keys()].filter((id) => id.startsWith(`${c.store.clientId}:`)).length
    const before = clients.map(confirmedBy)
    await until(() => clients.every((c, i) => confirmedBy(c) > before[i]!), "every client, A's included, to get events confirmed after the kill")
    const failedOver = performance.now()
    running = false
    await Promise.all(loops)
    for (const c of clients) c.proxy.setOffline(false)
    await Promise.all(clients.map((c) => within(c.store.sync.flush(), `flush of ${c.name}`, 15_000)))

    const reader = postgresBackend({ connectionString: POSTGRES_URL }, { schema })
    cleanups.push(() => reader.close())
    const log = await backendLog(reader, storeId)
    await Promise.all(
      clients.map((c) =>
        waitFor(
          c.store.sync.status,
          (st) => st.state === 'synced' && st.pending === 0 && st.head === log.length,
          `${c.name} to reach head ${log.length}`,
          15_000,
        ),
      ),
    )
    console.log(
      `server-postgres: killed server A after ${atKill} confirmations (${(killedAt - started).toFixed(0)} ms in), A's clients confirmed on B after ${(failedOver - killedAt).toFixed(0)} ms; ${log.length} events in the end`,
    )

    expect(failures).toEqual([])
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1))
    const lost = [...confirmed].filter(([id, seq]) => log[seq - 1]?.id !== id)
    expect(lost, 'events answered pushed that are not in the log at their seq').toEqual([])
    expect(log.map((e) => e.id).sort()).toEqual([...committed].sort())
    const state = (s: Store<TodoSchema>) => [s.query(sql`SELECT * FROM todos ORDER BY id`).value, s.query(sql`SELECT * FROM kv ORDER BY k`).value]
    for (const c of clients) {
      expect(logOf(c.store.events()), c.name).toEqual(logOf(log))
      expect(state(c.store), c.name).toEqual(state(clients[0]!.store))
    }
  })
})
