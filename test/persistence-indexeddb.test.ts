/**
 * Store-level persistence on indexedDbStorage (fake-indexeddb in Node):
 * restarts keep state, events and identity; offline pending events survive
 * and sync later; a schema change rebuilds. Every reopen uses a new
 * `indexedDbStorage()` instance over the same database, as a reloaded page would.
 */
import 'fake-indexeddb/auto'
import { localTransport, type Store } from 'tidelog'
import { indexedDbStorage } from 'tidelog/adapters/indexeddb'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { model, mulberry32, randomEvent, schema, schemaWithIndex, stateOf, storeOpener, uiOf, withoutSnapshots } from './fixtures/persistence-schema.js'
import { backendLog, within } from './helpers/wait.js'

const { set, add, noteAdded, filterChanged } = schema.events
const STORE = 'persist'
let counter = 0
const freshName = () => `tidelog-persistence-${Date.now().toString(36)}-${counter++}`

const { open, close, closeAll } = storeOpener((name: string) => indexedDbStorage({ name }))
afterEach(closeAll)

const everything = (store: Store<any>) => ({ state: stateOf(store), ui: uiOf(store), events: store.events(), pending: store.sync.status.value.pending })

describe('indexedDbStorage persistence through the store', () => {
  it('reopens with the same state, events and clientId; the id counter continues', async () => {
    const name = freshName()
    const random = mulberry32(11)
    const a = await open(name)
    a.store.commit(set({ id: 'i1', value: 1 }), add({ id: 'i1', by: 4 }), noteAdded({ id: 'n', body: 'ünïcode ✓' }))
    a.store.commit(filterChanged({ filter: 'open' }))
    for (let i = 0; i < 40; i++) a.store.commit(randomEvent(random, i))
    const before = everything(a.store)
    expect(before.state).toEqual(model(before.events))
    await close(a.store)

    // this session ends without its closing snapshot: its commits must come back from the journal
    const b = await open(name, { storage: withoutSnapshots(indexedDbStorage({ name })) })
    expect(b.store.clientId).toBe(a.store.clientId)
    expect(everything(b.store)).toEqual(before)
    expect(b.warnings).toEqual([])
    const next = b.store.commit(set({ id: 'i2', value: 2 }), filterChanged({ filter: 'later' }))
    expect(before.events.map((e) => e.id)).not.toContain(next.event.id)
    await close(b.store)

    const c = await open(name)
    expect(c.progress.filter((p) => p.phase === 'replay').at(-1)).toEqual({ phase: 'replay', done: 1, total: 1 })
    expect(uiOf(c.store)).toEqual([{ k: 'filter', v: 'later' }])
    const after = everything(c.store)
    expect(after.events).toEqual([...before.events, next.events[0]])
    expect(after.state).toEqual(model(after.events))

    const other = await open(freshName())
    expect(other.store.clientId).not.toBe(a.store.clientId)
  })

  it('keeps offline pending events across reloads and syncs them once a transport is given', async () => {
    const name = freshName()
    const backend = memoryBackend()
    const a = await open(name)
    a.store.commit(set({ id: 'x', value: 1 }))
    a.store.commit(filterChanged({ filter: 'mine' }), add({ id: 'x', by: 1 }))
    await close(a.store)

    const b = await open(name, { transport: localTransport(backend) })
    b.store.sync.pause()
    b.store.commit(noteAdded({ id: 'n', body: 'while paused' }))
    const pending = b.store.events()
    expect(pending.map((e) => e.seq)).toEqual([null, null, null])
    await close(b.store)
    expect(await backendLog(backend, STORE)).toEqual([])

    const c = await open(name, { transport: localTransport(backend) })
    expect(c.store.sync.status.value.pending).toBe(3)
    await within(c.store.sync.flush(), 'the pending events to sync')
    const log = await backendLog(backend, STORE)
    expect(log.map((e) => e.id)).toEqual(pending.map((e) => e.id))
    expect(stateOf(c.store)).toEqual(model(log))
    expect(uiOf(c.store)).toEqual([{ k: 'filter', v: 'mine' }])
    await close(c.store)

    const d = await open(name)
    expect(d.store.events()).toEqual(log)
    expect(d.store.sync.status.value).toMatchObject({ pending: 0, head: 3 })
  })

  it('rebuilds after a schema change, with progress', async () => {
    const name = freshName()
    const a = await open(name)
    for (let i = 0; i < 30; i++) a.store.commit(set({ id: `i${i % 7}`, value: i }), add({ id: `i${i % 5}`, by: 1 }))
    a.store.commit(filterChanged({ filter: 'kept' }))
    const before = everything(a.store)
    await close(a.store)

    const b = await open(name, { schema: schemaWithIndex })
    expect(b.progress.filter((p) => p.phase === 'rebuild').at(-1)).toEqual({ phase: 'rebuild', done: 61, total: 61 })
    expect(everything(b.store)).toEqual(before)
    await close(b.store)
    const c = await open(name, { schema: schemaWithIndex })
    expect(c.progress.some((p) => p.phase === 'rebuild')).toBe(false)
    expect(everything(c.store)).toEqual(before)
  })

  it('makes a second store on the same database and storeId a client of the first (tabs); waitForLock: true waits for the lock instead', async () => {
    const name = freshName()
    const a = await open(name)
    await a.store.commit(set({ id: 'x', value: 1 })).persisted
    const tab = await open(name)
    expect(stateOf(tab.store)).toEqual(stateOf(a.store))
    expect(tab.store.clientId).not.toBe(a.store.clientId)
    await close(tab.store)
    const waiting = open(name, { waitForLock: true })
    await close(a.store)
    const b = await within(waiting, 'the waiting store to get the lock')
    expect(b.store.clientId).toBe(a.store.clientId)
  })
})
