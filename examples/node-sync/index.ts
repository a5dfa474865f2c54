// Two stores in one process, each with its own WebSocket to one sync server,
// committing concurrently; prints both states once they have converged.
//   npx tsx --conditions=tidelog-source examples/node-sync/index.ts   (from the root)
import { effect } from '@preact/signals-core'
import { createStore, defineEvent, defineSchema, type Store, sql } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { websocketTransport } from 'tidelog/transports/websocket'
import { WebSocket } from 'ws'

const schema = defineSchema({
  tables: {
    todos: sql`CREATE TABLE todos (id TEXT PRIMARY KEY, text TEXT NOT NULL, completed INTEGER NOT NULL DEFAULT 0)`,
  },
  events: {
    todoCreated: defineEvent<{ id: string; text: string }>({
      materialize: ({ id, text }) => sql`INSERT INTO todos (id, text) VALUES (${id}, ${text})`,
    }),
    todoCompleted: defineEvent<{ id: string }>({
      materialize: ({ id }) => sql`UPDATE todos SET completed = 1 WHERE id = ${id}`,
    }),
  },
})

interface Todo {
  id: string
  text: string
  completed: number
}

/** Resolves once the store is synced up to `head`: waits on the status signal, never polls. */
function syncedTo(store: Store, head: number): Promise<void> {
  return new Promise((resolve) => {
    let stop: (() => void) | undefined
    stop = effect(() => {
      const status = store.sync.status.value
      if (status.state === 'synced' && status.pending === 0 && status.head >= head) {
        resolve()
        queueMicrotask(() => stop?.())
      }
    })
  })
}

const backend = memoryBackend()
const server = await createSyncServer({ backend, port: 0 })
const connect = () => createStore({ schema, storeId: 'node-sync-demo', transport: websocketTransport({ url: server.url, WebSocket }) })
const [alice, bob] = await Promise.all([connect(), connect()])

// Both commit before either has heard of the other: the server orders them,
// each client rebases its pending events onto what it pulls.
alice.commit(schema.events.todoCreated({ id: 'milk', text: 'buy milk' }))
bob.commit(schema.events.todoCreated({ id: 'eggs', text: 'buy eggs' }))
alice.commit(schema.events.todoCompleted({ id: 'milk' }))
const last = bob.commit(schema.events.todoCreated({ id: 'bread', text: 'bake bread' }))

await Promise.all([alice.sync.flush(), bob.sync.flush(), last.confirmed])
const head = Math.max(alice.sync.status.value.head, bob.sync.status.value.head)
await Promise.all([syncedTo(alice, head), syncedTo(bob, head)])

const all = sql`SELECT id, text, completed FROM todos ORDER BY id`
for (const [name, store] of [
  ['alice', alice],
  ['bob', bob],
] as const) {
  const { head, pending } = store.sync.status.value
  console.log(`${name}: head ${head}, ${pending} pending`)
  for (const t of store.query<Todo>(all).value) console.log(`  [${t.completed ? 'x' : ' '}] ${t.id}: ${t.text}`)
  console.log(
    `  eventlog: ${store
      .events()
      .map((e) => `${e.seq}:${e.name}`)
      .join(' ')}`,
  )
}
const same = JSON.stringify(alice.query(all).value) === JSON.stringify(bob.query(all).value)
console.log(same ? 'converged: both stores hold the same state' : 'NOT converged')

await Promise.all([alice.close(), bob.close()])
await server.close()
await backend.close()
if (!same) process.exitCode = 1
