/**
 * End to end over real wires: one sync server (fileBackend in a temp dir, a
 * random port on 127.0.0.1) and clients on all three transports syncing one
 * storeId. A WebSocket and an HTTP client talk to the server directly; two
 * BroadcastChannel clients talk to a hostBroadcastChannel whose backend
 * forwards to the same server over HTTP (test/fixtures/e2e-http-backend.ts),
 * so every event crosses a real socket. Also auth (TARGETS.md R5): a token
 * function is asked again when the WebSocket reconnects after a server restart.
 *
 * Replay the commit mix: TIDELOG_E2E_SEED=<seed> npx vitest run test/e2e-network.test.ts
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type CommitReceipt, createStore, type EventValue, type Store, type SyncStatus, sql, type Transport } from 'tidelog'
import { type AuthenticateContext, createSyncServer, fileBackend, memoryBackend, type SyncServer } from 'tidelog/server'
import { broadcastChannelTransport, hostBroadcastChannel } from 'tidelog/transports/broadcast-channel'
import { httpTransport } from 'tidelog/transports/http'
import { websocketTransport } from 'tidelog/transports/websocket'
import { afterEach, describe, expect, it } from 'vitest'
import { WebSocket } from 'ws'
import { httpBackend } from './fixtures/e2e-http-backend.js'
import { mulberry32 } from './helpers/random.js'
import { upgradeStatus } from './helpers/server.js'
import { freshStoreId, type Todo, type TodoSchema, todoSchema } from './helpers/todo-schema.js'
import { converged, logOf, turn, waitFor } from './helpers/wait.js'

const { todoCreated, todoRenamed, todoCompleted, todoDeleted, kvSet } = todoSchema.events
const SYNC = { minBackoffMs: 5, maxBackoffMs: 50 }

/** Undo steps of the current test, run last-in first-out whatever happened. */
const cleanups: (() => Promise<unknown> | unknown)[] = []
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup()
})

async function openStore(storeId: string, transport: Transport): Promise<Store<TodoSchema>> {
  const store = await createStore({ schema: todoSchema, storeId, transport, sync: SYNC })
  cleanups.push(() => store.close())
  return store
}

/** The state a client must agree on. */
const stateOf = (store: Store<TodoSchema>) => ({
  todos: store.query<Todo>(sql`SELECT * FROM todos ORDER BY id`).value,
  kv: store.query(sql`SELECT * FROM kv ORDER BY k`).value,
})

const SHARED = ['s0', 's1', 's2']

/**
 * One client's next commit: creates of its own rows, renames and completions
 * of the shared rows every client writes, the same kv row for everyone,
 * renames and deletes of its own rows. Nothing in it can fail to materialize
 * in any order (no client ever re-creates an id), so every event must land.
 */
function nextCommit(name: string, round: number, own: string[], random: () => number): EventValue<any>[] {
  const pick = <T>(items: readonly T[]) => items[Math.floor(random() * items.length)]!
  const one = (): EventValue<any> => {
    const r = random()
    if (r < 0.25 || own.length === 0) {
      const id = `${name}-${round}-${own.length}`
      own.push(id)
      return todoCreated({ id, text: `${name} ${round}` })
    }
    if (r < 0.45) return todoRenamed({ id: pick(SHARED), text: `${name}@${round}` })
    if (r < 0.55) return todoCompleted({ id: pick(SHARED) })
    if (r < 0.7) return kvSet({ k: 'last-writer', v: `${name}@${round}` })
    if (r < 0.85) return todoRenamed({ id: pick(own), text: `${name} renamed ${round}` })
    return todoDeleted({ id: own.splice(Math.floor(random() * own.length), 1)[0]! })
  }
  return random() < 0.3 ? [one(), one()] : [one()]
}

describe('end to end: WebSocket, HTTP and BroadcastChannel clients on one sync server', () => {
  it('converges clients committing concurrently on all three transports to the server log order and one state', async () => {
    const seed = Number(process.env.TIDELOG_E2E_SEED ?? Math.floor(Math.random() * 2 ** 31))
    console.log(`e2e network: seed ${seed} (replay with TIDELOG_E2E_SEED=${seed})`)
    const random = mulberry32(seed)

    const dir = await mkdtemp(join(tmpdir(), 'tidelog-e2e-net-'))
    cleanups.push(() => rm(dir, { recursive: true, force: true }))
    const backend = fileBackend({ dir })
    cleanups.push(() => backend.close())
    const server = await createSyncServer({ backend, port: 0, host: '127.0.0.1' })
    cleanups.push(() => server.close())
    // the BroadcastChannel host reaches the server over HTTP, like a worker in front of a remote server would
    const relay = httpBackend(server.url)
    cleanups.push(() => relay.close())
    const channel = `tidelog-e2e-${Math.random().toString(36).slice(2, 10)}`
    const host = hostBroadcastChannel({ channel, backend: relay })
    cleanups.push(() => host.close())

    const storeId = freshStoreId('e2e-net')
    const stores: Record<string, Store<TodoSchema>> = {
      ws: await openStore(storeId, websocketTransport({ url: server.url, WebSocket })),
      http: await openStore(storeId, httpTransport({ url: server.url })),
      bc1: await openStore(storeId, broadcastChannelTransport({ channel })),
      bc2: await openStore(storeId, broadcastChannelTransport({ channel })),
    }
    const all = Object.values(stores)

    const receipts: CommitReceipt[] = [stores.ws!.commit(...SHARED.map((id) => todoCreated({ id, text: 'shared' })))]
    await converged(backend, storeId, ...all)
    for (const store of all) expect(store.query(sql`SELECT id FROM todos ORDER BY id`).value).toEqual(SHARED.map((id) => ({ id })))

    // Everyone commits every round; a round lets the event loop turn a random number of times, so
    // commits land while pulls, pushes and rebases of the other clients are on the wire.
    const own: Record<string, string[]> = Object.fromEntries(Object.keys(stores).map((name) => [name, []]))
    for (let round = 0; round < 40; round++) {
      for (const [name, store] of Object.entries(stores)) {
        if (random() < 0.7) receipts.push(store.commit(...nextCommit(name, round, own[name]!, random)))
      }
      if (round === 20) receipts.push(stores.http!.commit(todoDeleted({ id: 's2' })))
      for (let turns = Math.floor(random() * 4); turns > 0; turns--) await turn()
    }

    const log = await converged(backend, storeId, ...all)
    expect(log.map((e) => e.seq)).toEqual(log.map((_, i) => i + 1))
    expect(new Set(log.map((e) => e.id)).size).toBe(log.length)
    // every receipt names the seq the server gave its last event, and every committed event landed once
    const seqOf = new Map(log.map((e) => [e.id, e.seq]))
    const outcomes = await Promise.all(
      receipts.map((r) =>
        r.confirmed.then(
          (seq) => ({ seq }),
          (error: Error) => ({ error: error.message }),
        ),
      ),
    )
    expect(outcomes).toEqual(receipts.map((r) => ({ seq: seqOf.get(r.events[r.events.length - 1]!.id) })))
    expect(log.map((e) => e.id).sort()).toEqual(receipts.flatMap((r) => r.events.map((e) => e.id)).sort())
    expect(new Set(log.map((e) => e.clientId))).toEqual(new Set(all.map((s) => s.clientId)))

    const expectedState = stateOf(stores.ws!)
    expect(expectedState.todos.find((t) => t.id === 's2')).toBeUndefined()
    for (const [name, store] of Object.entries(stores)) {
      expect(logOf(store.events()), name).toEqual(logOf(log))
      expect(stateOf(store), name).toEqual(expectedState)
    }

    // a client that starts from nothing builds the same state from the server's log alone
    const late = await openStore(storeId, websocketTransport({ url: server.url, WebSocket }))
    await waitFor(late.sync.status, (s) => s.state === 'synced' && s.head === log.length, 'the late client to catch up')
    expect(logOf(late.events())).toEqual(logOf(log))
    expect(stateOf(late)).toEqual(expectedState)
  })

  it('asks a token function again when the WebSocket reconnects after a server restart, and keeps syncing (R5)', async () => {
    const backend = memoryBackend()
    cleanups.push(() => backend.close())
    const storeId = freshStoreId('e2e-auth')
    // The server accepts only the newest token issued to each client: a token stops working once refreshed.
    const issued = new Map<string, number>()
    const calls = { ws: 0, http: 0 }
    const tokenFor = (client: 'ws' | 'http') => async () => {
      calls[client]++
      const n = (issued.get(client) ?? 0) + 1
      issued.set(client, n)
      return `${client}.${n}`
    }
    const upgrades: string[] = [] // tokens of the WebSocket connections the server let in
    const authenticate = ({ storeId: asked, token, request }: AuthenticateContext) => {
      const [client, n] = (token ?? '').split('.')
      const ok = asked === storeId && client !== undefined && issued.get(client) === Number(n)
      if (ok && request.url?.startsWith('/sync')) upgrades.push(token!)
      return ok
    }
    let server: SyncServer = await createSyncServer({ backend, port: 0, host: '127.0.0.1', authenticate })
    cleanups.push(() => server.close())
    const { port } = server

    const ws = await openStore(storeId, websocketTransport({ url: server.url, WebSocket, token: tokenFor('ws') }))
    const http = await openStore(storeId, httpTransport({ url: server.url, token: tokenFor('http') }))
    const states: SyncStatus['state'][] = []
    const unwatch = ws.sync.status.subscribe((s) => void states.push(s.state))
    cleanups.push(unwatch)

    ws.commit(todoCreated({ id: 'w1', text: 'before restart' }))
    http.commit(todoCreated({ id: 'h1', text: 'before restart' }))
    await converged(backend, storeId, ws, http)
    expect(upgrades).toEqual(['ws.1'])
    const callsBefore = calls.ws

    // a server-side disconnect: every connection is closed, and the server comes back on the same port
    states.length = 0
    await server.close()
    server = await createSyncServer({ backend, port, host: '127.0.0.1', authenticate })

    ws.commit(todoRenamed({ id: 'h1', text: 'renamed over the new connection' }))
    http.commit(todoRenamed({ id: 'w1', text: 'renamed after the restart' }))
    const log = await converged(backend, storeId, ws, http)
    expect(states).toContain('offline')
    expect(calls.ws).toBeGreaterThan(callsBefore)
    // the connection the client came back on carried a refreshed token, the newest it was given
    expect(upgrades.length).toBeGreaterThan(1)
    expect(upgrades[upgrades.length - 1]).toBe(`ws.${issued.get('ws')}`)
    expect(upgrades[upgrades.length - 1]).not.toBe('ws.1')
    // ...which mattered: the first token no longer opens a connection
    expect(await upgradeStatus(`ws://127.0.0.1:${port}/sync?storeId=${storeId}`, { authorization: 'Bearer ws.1' })).toBe(401)

    for (const store of [ws, http]) {
      expect(logOf(store.events())).toEqual(logOf(log))
      expect(stateOf(store).todos).toEqual([
        { id: 'h1', text: 'renamed over the new connection', completed: 0 },
        { id: 'w1', text: 'renamed after the restart', completed: 0 },
      ])
    }
  })
})
