/**
 * S6: a backend that lost acknowledged events (restored from an old backup,
 * a log cut short) answers a head behind the client's confirmed head under
 * the same backendId. The client must show `error` and wait, not spin
 * between pull and a push that can never be accepted.
 */

import { createStore, localTransport, type Store, type SyncBackend } from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { todoSchema } from './helpers/todo-schema.js'
import { waitFor, within } from './helpers/wait.js'

const { todoCreated } = todoSchema.events
const stores: Store<any>[] = []
afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()))
})

/** A backend whose log can be swapped for another under the same backendId, counting the requests it gets. */
function swappable(first: SyncBackend) {
  let inner = first
  let requests = 0
  const backend: SyncBackend = {
    pull: async (storeId, since, limit) => (requests++, { ...(await inner.pull(storeId, since, limit)), backendId: 'same' }),
    push: async (storeId, request) => {
      requests++
      const answer = await inner.push(storeId, request)
      return answer.type === 'pushed' ? { ...answer, backendId: 'same' } : answer
    },
    subscribe: (storeId, onHead) => inner.subscribe(storeId, onHead),
    close: async () => {},
  }
  return { backend, swap: (next: SyncBackend) => (inner = next), requests: () => requests }
}

describe('a backend behind the client', () => {
  it('shows error naming the lost events and retries slowly instead of looping', async () => {
    const log = swappable(memoryBackend())
    const store = await createStore({ schema: todoSchema, storeId: 'behind', transport: localTransport(log.backend), onWarning: () => {} })
    stores.push(store)
    for (let i = 0; i < 5; i++) store.commit(todoCreated({ id: `t${i}`, text: 'x' }))
    await within(store.sync.flush(), 'five events confirmed')
    // the backend comes back from an old backup: two events, same backendId
    const restored = memoryBackend()
    await restored.push('behind', { parentSeq: 0, events: (await log.backend.pull('behind', 0, 2)).events.map(({ seq: _seq, ...e }) => e) })
    log.swap(restored)
    store.sync.pause()
    store.sync.resume()
    store.commit(todoCreated({ id: 'later', text: 'y' }))
    const status = await waitFor(store.sync.status, (s) => s.state === 'error', 'sync state error')
    expect(status.error?.message).toMatch(/ends at seq 2, before this client's confirmed head 5/)
    const seen = log.requests()
    await new Promise((resolve) => setTimeout(resolve, 1000))
    expect(log.requests() - seen).toBeLessThanOrEqual(1)
    expect(store.sync.status.value).toMatchObject({ state: 'error', head: 5, pending: 1 })
    expect((await restored.pull('behind', 0, 10)).head).toBe(2) // nothing pushed onto the shorter log
  })
})
