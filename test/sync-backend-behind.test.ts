/**
 * S6: a backend that lost acknowledged events (restored from an old backup,
 * a log cut short) answers a head behind the client's confirmed head under
 * the same backendId. The client must show `error` and wait, not spin
 * between pull and a push that can never be accepted. The same for a backend
 * that rejects pushes on its own head (it judges them against another log).
 */

import { createStore, localTransport, type Store, type SyncBackend } from 'tidelog'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { todoSchema } from './helpers/todo-schema.js'
import { wrapTransport } from './helpers/transports.js'
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
    // one incarnation ('same') over whichever log is inside: a push names this one, not the inner log's
    push: async (storeId, { backendId: _same, ...request }) => {
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

  it('shows error and backs off when the backend rejects pushes on its own head, instead of asking again at once', async () => {
    const inner = memoryBackend()
    let requests = 0
    // pulls say 'relabelled', pushes are judged by the inner log under its own backendId: every push is rejected
    const backend: SyncBackend = {
      pull: async (storeId, since, limit) => (requests++, { ...(await inner.pull(storeId, since, limit)), backendId: 'relabelled' }),
      push: async (storeId, request) => (requests++, inner.push(storeId, request)),
      subscribe: (storeId, onHead) => inner.subscribe(storeId, onHead),
      close: async () => {},
    }
    const store = await createStore({ schema: todoSchema, storeId: 'fruitless', transport: localTransport(backend), onWarning: () => {} })
    stores.push(store)
    store.commit(todoCreated({ id: 't', text: 'x' }))
    const status = await waitFor(store.sync.status, (s) => s.state === 'error', 'sync state error')
    expect(status.error?.message).toMatch(/rejected a push based on its head 0 and backendId relabelled, which its pull reports unchanged/)
    const seen = requests
    await new Promise((resolve) => setTimeout(resolve, 300))
    // backoff (full jitter from 250 ms): a few rounds of three requests at most; without it the loop never yields
    expect(requests - seen).toBeLessThanOrEqual(30)
    expect(store.sync.status.value).toMatchObject({ pending: 1 })
    expect((await inner.pull('fruitless', 0, 10)).head).toBe(0)
  })

  it('does not take a pull answer that live events overtook for a backend that lost events', async () => {
    const backend = memoryBackend()
    const busy = await createStore({ schema: todoSchema, storeId: 'overtaken', transport: localTransport(backend) })
    stores.push(busy)
    let hold = false
    let held: Promise<void> | undefined
    let seenError: Error | undefined
    const t = wrapTransport(localTransport(backend), {
      async pull(request, inner) {
        const answer = await inner.pull(request)
        if (!hold) return answer
        hold = false
        let done = () => {}
        held = new Promise((r) => (done = r))
        try {
          // while this answer travels (say, a POST /pull slower than the long-poll beside it), live events arrive
          busy.commit(todoCreated({ id: 'b1', text: 'x' }), todoCreated({ id: 'b2', text: 'x' }))
          await busy.sync.flush()
          await waitFor(slow.sync.status, (s) => s.head >= request.since + 2, 'the live events to be applied')
          return answer
        } finally {
          done()
        }
      },
    })
    const slow = await createStore({ schema: todoSchema, storeId: 'overtaken', transport: t })
    stores.push(slow)
    await within(slow.sync.flush(), 'the first sync')
    const unsubscribe = slow.sync.status.subscribe((s) => {
      if (s.error) seenError = s.error
    })
    // the next pull is held: the one before the push of s1 or the one after it, as the engine's timing has it
    hold = true
    slow.commit(todoCreated({ id: 's1', text: 'y' }))
    await within(slow.sync.flush(), 'the commit confirmed')
    expect(held).toBeDefined() // the held pull happened
    await within(held!, 'the held pull answered')
    await within(busy.sync.flush(), 'the live events confirmed')
    await waitFor(slow.sync.status, (s) => s.head === 3 && s.state === 'synced', 'the slow client synced')
    unsubscribe()
    expect(seenError).toBeUndefined()
    const order = (await backend.pull('overtaken', 0, 10)).events.map((e) => (e.args as { id: string }).id)
    expect([...order].sort()).toEqual(['b1', 'b2', 's1'])
    expect(slow.events().map((e) => (e.args as { id: string }).id)).toEqual(order)
  })
})
