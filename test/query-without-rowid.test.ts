/**
 * store.query() on a WITHOUT ROWID table: SQLite's update hook never reports
 * writes to such tables, so their live queries must learn of commits, pulled
 * events and rebases another way (database.ts `watchTables`).
 */

import { createStore, localTransport, type Store, sql } from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { todoSchema } from './helpers/todo-schema.js'
import { waitFor, within } from './helpers/wait.js'

const { kvSet } = todoSchema.events
const stores: Store<any>[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})
const open = async (backend: ReturnType<typeof memoryBackend>) => {
  const store = await createStore({ schema: todoSchema, storeId: 'kv', transport: localTransport(backend) })
  stores.push(store)
  return store
}
const kv = (store: Store<any>) => store.query<{ k: string; v: string }>(sql`SELECT k, v FROM kv ORDER BY k`)

describe('store.query() over a WITHOUT ROWID table', () => {
  it('re-runs after a local commit, an event pulled from another client and a rebase', async () => {
    const backend = memoryBackend()
    const a = await open(backend)
    const b = await open(backend)
    const onA = kv(a)
    const onB = kv(b)
    const stop = [onA.subscribe(() => {}), onB.subscribe(() => {})]
    a.commit(kvSet({ k: 'x', v: 'from a' }))
    expect(onA.value).toEqual([{ k: 'x', v: 'from a' }])
    await waitFor(onB, (rows) => rows.length === 1, 'the pulled event on the other client')
    // b commits offline over a's next event: the rebase rolls b's write back and applies it again on top
    b.sync.pause()
    b.commit(kvSet({ k: 'y', v: 'from b' }))
    expect(onB.value.map((r) => r.k)).toEqual(['x', 'y'])
    await within(a.commit(kvSet({ k: 'x', v: 'a again' })).confirmed, 'a second event of a')
    b.sync.resume()
    await waitFor(onB, (rows) => rows.length === 2 && rows[0]!.v === 'a again', 'the rebased state on the other client')
    await waitFor(onA, (rows) => rows.length === 2, 'the event of b on a')
    for (const s of stop) s()
  })
})
