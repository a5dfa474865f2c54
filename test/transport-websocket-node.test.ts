// tidelog/transports/websocket under Node (the `node` export condition): with
// no global WebSocket (Node 20) it dials with 'ws' by itself, and syncs.

import { createStore, defineEvent, defineSchema, sql } from 'tidelog'
import { createSyncServer, memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { websocketTransport } from '../transports/websocket-node.js'

const schema = defineSchema({
  tables: { t: sql`CREATE TABLE t (id TEXT PRIMARY KEY)` },
  events: { added: defineEvent({ materialize: ({ id }) => sql`INSERT INTO t (id) VALUES (${id})` }) },
})

describe('websocketTransport under Node', () => {
  const cleanups: (() => Promise<void>)[] = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })

  it('syncs without a WebSocket option when the runtime has no global one', async () => {
    const global = globalThis as { WebSocket?: unknown }
    const saved = global.WebSocket
    delete global.WebSocket
    cleanups.push(async () => {
      if (saved !== undefined) global.WebSocket = saved
    })
    const backend = memoryBackend()
    const server = await createSyncServer({ backend, port: 0 })
    cleanups.push(
      () => backend.close(),
      () => server.close(),
    )
    const store = await createStore({ schema, storeId: 'node-ws', transport: websocketTransport({ url: server.url }) })
    cleanups.push(() => store.close())
    expect(await store.commit(schema.events.added({ id: 'a' })).confirmed).toBe(1)
    expect((await backend.pull('node-ws', 0, 10)).events.map((e) => e.name)).toEqual(['added'])
  })
})
