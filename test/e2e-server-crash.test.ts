/**
 * Server crash, end to end (TARGETS.md R3): the sync server runs in a child
 * process over fileBackend (test/fixtures/e2e-server.ts); clients in this
 * process commit in a loop over WebSocket and HTTP and record every event
 * whose receipt `confirmed` resolved. The server is killed with SIGKILL at a
 * random moment and started again on the same data directory and port, a few
 * rounds. The clients must reconnect by themselves; every confirmed event
 * must still be in the server's log with the seq it was confirmed at, every
 * committed event must land exactly once, and all clients must converge.
 *
 * Replay a failure: TIDELOG_E2E_CRASH_SEED=<seed> npx vitest run test/e2e-server-crash.test.ts
 * (the seed fixes the kill points and the commit pacing; the OS still decides the exact interleaving)
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { once } from 'node:events'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { createStore, type Store, sql, type Transport } from 'tidelog'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { httpBackend } from './fixtures/e2e-http-backend.js'
import { freePort } from './helpers/backend.js'
import { mulberry32 } from './helpers/random.js'
import { freshStoreId, type TodoSchema, todoSchema } from './helpers/todo-schema.js'
import { logOf, onChange, waitFor, within } from './helpers/wait.js'

const fixture = fileURLToPath(new URL('./fixtures/e2e-server.ts', import.meta.url))
const root = fileURLToPath(new URL('..', import.meta.url))
const ROUNDS = 3
const SYNC = { minBackoffMs: 5, maxBackoffMs: 50 }
const { todoCreated, kvSet } = todoSchema.events

const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

const delay = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms))

interface ServerProcess {
  proc: ChildProcess
  exited: Promise<unknown>
}

/** Starts the server child and resolves once it listens. */
async function startServer(dir: string, port: number): Promise<ServerProcess> {
  const proc = spawn(process.execPath, ['--import', 'tsx', fixture, dir, String(port)], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] })
  let stderr = ''
  proc.stderr!.on('data', (chunk) => (stderr += chunk))
  const exited = once(proc, 'exit')
  await within(
    new Promise<void>((resolve, reject) => {
      let out = ''
      proc.stdout!.on('data', (chunk) => {
        out += chunk
        if (out.includes('ready ')) resolve()
      })
      exited.then(([code, signal]) => reject(new Error(`the server child exited before listening (${code ?? signal}): ${stderr}`)))
    }),
    'the server child to listen',
  )
  return { proc, exited }
}

describe('end to end: kill -9 of the sync server', () => {
  it('loses no confirmed event, and clients reconnect by themselves and converge', async () => {
    const seed = Number(process.env.TIDELOG_E2E_CRASH_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`e2e server crash: seed ${seed} (replay with TIDELOG_E2E_CRASH_SEED=${seed})`)
    const random = mulberry32(seed)

    const dir = await mkdtemp(join(tmpdir(), 'tidelog-e2e-crash-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const port = await freePort()
    const url = `http://127.0.0.1:${port}`
    let server = await startServer(dir, port)
    cleanups.push(() => {
      server.proc.kill('SIGKILL')
      return server.exited
    })

    const storeId = freshStoreId('e2e-crash')
    const transports: Record<string, () => Transport> = {
      ws1: () => websocketTransport({ url, WebSocket }),
      ws2: () => websocketTransport({ url, WebSocket }),
      http: () => httpTransport({ url }),
    }
    const stores: Record<string, Store<TodoSchema>> = {}
    for (const [name, transport] of Object.entries(transports)) {
      const store = await createStore({ schema: todoSchema, storeId, transport: transport(), sync: SYNC })
      cleanups.push(() => store.close())
      stores[name] = store
    }
    const all = Object.values(stores)

    // Every commit is one event, so a receipt's confirmed seq is that event's seq.
    const committed: string[] = []
    const confirmed = new Map<string, number>()
    const confirmedBy: Record<string, number> = Object.fromEntries(Object.keys(stores).map((name) => [name, 0]))
    const failures: string[] = []
    const progress = onChange()
    let running = true
    const loops = Object.entries(stores).map(async ([name, store]) => {
      for (let n = 0; running; n++) {
        const receipt = store.commit(n % 4 === 3 ? kvSet({ k: 'last', v: `${name}:${n}` }) : todoCreated({ id: `${name}-${n}`, text: `${name} ${n}` }))
        const { id } = receipt.event
        committed.push(id)
        receipt.confirmed.then(
          (seq) => {
            confirmed.set(id, seq!)
            confirmedBy[name]!++
            progress.changed()
          },
          (error) => failures.push(`${id}: ${(error as Error).message}`),
        )
        await delay(1 + Math.floor(random() * 5))
      }
    })
    /** Resolves once `pred` holds, checked on every confirmation (no polling). */
    const until = progress.until

    const kills: { confirmed: number; extraMs: number }[] = []
    for (let round = 0; round < ROUNDS; round++) {
      // a random moment: after some more confirmations, plus a random extra delay that lands anywhere in a push
      const target = confirmed.size + 10 + Math.floor(random() * 60)
      await until(() => confirmed.size >= target, `${target} confirmations before kill ${round + 1}`)
      const extraMs = Math.floor(random() * 20)
      await delay(extraMs)
      server.proc.kill('SIGKILL')
      await server.exited
      kills.push({ confirmed: confirmed.size, extraMs })

      // every client notices the server is gone...
      await Promise.all(
        all.map((s) =>
          waitFor(s.sync.status, (st) => st.state === 'offline' || st.state === 'connecting' || st.state === 'error', `${s.clientId} to notice the crash`),
        ),
      )
      server = await startServer(dir, port)
      // ...and gets events confirmed by the restarted server without anyone telling it to reconnect
      const before = { ...confirmedBy }
      await until(() => Object.keys(before).every((name) => confirmedBy[name]! > before[name]!), `every client to reconnect after kill ${round + 1}`)
    }

    running = false
    await Promise.all(loops)
    await Promise.all(all.map((s) => within(s.sync.flush(), `flush of ${s.clientId}`, 15_000)))
    const log = await httpBackend(url).pullAll(storeId)
    await Promise.all(
      all.map((s) =>
        waitFor(s.sync.status, (st) => st.state === 'synced' && st.pending === 0 && st.head === log.length, `${s.clientId} to reach head ${log.length}`),
      ),
    )
    console.log(
      `e2e server crash: ${kills.length} kills after ${kills.map((k) => `${k.confirmed} confirmed (+${k.extraMs} ms)`).join(', ')}; ${log.length} events in the end`,
    )

    expect(failures).toEqual([])
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1))
    // R3: every event whose confirmation a client observed is in the log, at the seq it was confirmed at
    const lost = [...confirmed].filter(([id, seq]) => log[seq - 1]?.id !== id)
    expect(lost).toEqual([])
    // and every committed event landed exactly once
    expect(log.map((e) => e.id).sort()).toEqual([...committed].sort())
    const state = (s: Store<TodoSchema>) => [s.query(sql`SELECT * FROM todos ORDER BY id`).value, s.query(sql`SELECT * FROM kv ORDER BY k`).value]
    for (const [name, store] of Object.entries(stores)) {
      expect(logOf(store.events()), name).toEqual(logOf(log))
      expect(state(store), name).toEqual(state(stores.ws1!))
    }
  })
})
