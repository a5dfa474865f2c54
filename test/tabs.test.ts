/**
 * Several tabs on one storage (src/tabs.ts, PROTOCOL.md "Tabs"), in process:
 * stores on one memoryStorage whose tab link is a real BroadcastChannel, the
 * owner syncing with a memory backend. The same code in Chromium with
 * IndexedDB and Web Locks is test/browser-tabs.test.ts.
 */
import { randomUUID } from 'node:crypto'
import {
  createStore,
  defineEvent,
  defineSchema,
  localTransport,
  memoryStorage,
  type PendingEvent,
  type Storage,
  type Store,
  sql,
  type Transport,
  type TransportHandlers,
} from 'tidelog'
import { broadcastTabLinks } from 'tidelog/transports/broadcast-channel'
import { describe, expect, it } from 'vitest'
import { memoryBackend } from '../src/backends/memory.js'
import { schema } from './helpers/convergence.js'
import { itemsUiSchema } from './helpers/items-ui-schema.js'
import { swappableBackend } from './helpers/transports.js'
import { backendLog, waitFor, within } from './helpers/wait.js'

const sharedStorage = (): Storage => ({ ...memoryStorage(), tabs: broadcastTabLinks(`t-${randomUUID()}`, { requestTimeoutMs: 500, heartbeatMs: 200 }) })

type Items = Record<string, number>
const items = (store: Store<typeof schema>) => store.query<{ id: string; value: number }>(sql`SELECT id, value FROM items ORDER BY id`)
const asMap = (rows: { id: string; value: number }[]): Items => Object.fromEntries(rows.map((r) => [r.id, r.value]))
const until = (store: Store<typeof schema>, want: Items, what: string) =>
  waitFor(items(store), (rows) => JSON.stringify(asMap(rows)) === JSON.stringify(want), what)

function setup(withServer = true) {
  const backend = memoryBackend()
  const storage = sharedStorage()
  const open = () =>
    createStore({
      schema,
      storeId: 'tabs',
      storage,
      dev: false,
      onWarning: () => {},
      transport: withServer ? localTransport(backend) : undefined,
      sync: { minBackoffMs: 5, maxBackoffMs: 50 },
    })
  return { backend, storage, open }
}
const set = (id: string, value: number) => schema.events.set({ id, value })

describe('several stores on one storage (tabs)', () => {
  it('a store that finds the storage locked boots from the owner, and commits show in both directions', async () => {
    const { backend, open } = setup()
    const owner = await open()
    await owner.commit(set('a', 1)).persisted
    const tab = await open()
    // booted with the owner's data: createStore resolved after the owner's view was applied
    expect(asMap(items(tab).value)).toEqual({ a: 1 })
    expect(tab.clientId).not.toBe(owner.clientId)

    const receipt = tab.commit(set('b', 2))
    await within(receipt.persisted, "the owner's acknowledgement")
    await until(owner, { a: 1, b: 2 }, 'the owner to show the tab commit')
    expect(await within(receipt.confirmed, 'the server to confirm')).toBe(2)
    owner.commit(set('c', 3))
    await until(tab, { a: 1, b: 2, c: 3 }, 'the tab to show the owner commit')
    await within(owner.sync.flush(), 'owner flush')
    expect((await backendLog(backend, 'tabs')).map((e) => e.args)).toEqual([
      { id: 'a', value: 1 },
      { id: 'b', value: 2 },
      { id: 'c', value: 3 },
    ])
    await waitFor(tab.sync.status, (s) => s.head === 3 && s.pending === 0, 'the tab to hold the confirmed log')
    await tab.close()
    await owner.close()
  })

  it('works with no server at all: tabs share pending events through the owner', async () => {
    const { open } = setup(false)
    const owner = await open()
    const a = await open()
    const b = await open()
    a.commit(set('x', 1))
    b.commit(schema.events.add({ id: 'x', by: 5 }))
    await Promise.all([owner, a, b].map((s) => until(s, { x: 6 }, 'every tab to show both commits')))
    // the owner holds them as pending, in one order that every tab shows
    expect(a.events().map((e) => e.id)).toEqual(owner.events().map((e) => e.id))
    expect(b.events().map((e) => e.id)).toEqual(owner.events().map((e) => e.id))
    await Promise.all([a.close(), b.close(), owner.close()])
  })

  it('the owner closes: another tab takes over the storage by itself, with what was acknowledged and what was not', async () => {
    const { backend, open } = setup()
    const owner = await open()
    const a = await open()
    const b = await open()
    await a.commit(set('a', 1)).persisted
    owner.sync.pause() // the acknowledged event stays pending in the owner's storage
    await owner.commit(set('o', 1)).persisted
    await Promise.all([a, b].map((s) => until(s, { a: 1, o: 1 }, 'both tabs to see the pending events')))
    const closing = owner.close()
    const late = b.commit(set('b', 1)) // while the lock passes: acknowledged by whoever owns it next
    await closing
    await within(late.persisted, 'the new owner to acknowledge')
    await within(Promise.all([a.sync.flush(), b.sync.flush()]), 'both to flush')
    expect((await backendLog(backend, 'tabs')).map((e) => (e.args as { id: string }).id).sort()).toEqual(['a', 'b', 'o'])
    await Promise.all([a, b].map((s) => until(s, { a: 1, b: 1, o: 1 }, 'both tabs to converge')))
    // a store opened after everyone closed boots all of it from the storage
    await Promise.all([a.close(), b.close()])
    const again = await open()
    expect(asMap(items(again).value)).toEqual({ a: 1, b: 1, o: 1 })
    await again.close()
  })

  it('a new owner that has not heard from the server yet (backendId unknown) is no backend reset for the other tabs', async () => {
    const backend = memoryBackend()
    const inner = memoryStorage()
    // a storage that never keeps what came from upstream, as if the owner died before writing it
    const storage: Storage = {
      name: 'forgetful',
      tabs: broadcastTabLinks(`f-${randomUUID()}`, { requestTimeoutMs: 500, heartbeatMs: 200 }),
      async open(storeId, options) {
        const h = await inner.open(storeId, options)
        return { ...h, append: (records) => h.append(records.filter((r) => r.t !== 'upstream' && r.t !== 'confirm')), saveSnapshot: async () => {} }
      },
    }
    const open = () =>
      createStore({
        schema,
        storeId: 'fresh',
        storage,
        dev: false,
        onWarning: () => {},
        transport: localTransport(backend),
        sync: { minBackoffMs: 5, maxBackoffMs: 50 },
      })
    const a = await open()
    await a.commit(set('a', 1)).confirmed
    const b = await open()
    const c = await open()
    await Promise.all([b, c].map((s) => waitFor(s.sync.status, (st) => st.head === 1, 'the tabs to hold the confirmed event')))
    b.sync.pause() // b, first in line for the lock, takes over but stays away from the server: its backendId stays unknown
    await a.close()
    const late = c.commit(set('c', 2))
    await within(late.persisted, "the new owner's acknowledgement")
    expect(c.sync.status.value.error?.name).not.toBe('BackendResetError')
    b.sync.resume()
    await within(late.confirmed, 'the commit after the handoff to be confirmed')
    for (const s of [b, c]) expect(s.sync.status.value.error?.name).not.toBe('BackendResetError')
    await Promise.all([b, c].map((s) => until(s, { a: 1, c: 2 }, 'both tabs to converge')))
    await Promise.all([b.close(), c.close()])
  })

  async function wiped() {
    const backend = swappableBackend(memoryBackend())
    const storage = sharedStorage()
    const open = () =>
      createStore({
        schema,
        storeId: 'reset',
        storage,
        dev: false,
        onWarning: () => {},
        transport: localTransport(backend),
        sync: { minBackoffMs: 5, maxBackoffMs: 50 },
      })
    const owner = await open()
    const tab = await open()
    await within(tab.commit(set('t', 1)).confirmed, 'the tab commit to be confirmed')
    await within(owner.commit(set('o', 1)).confirmed, 'the owner commit to be confirmed')
    backend.current = memoryBackend() // the server's log was wiped: a new backendId
    owner.commit(set('o2', 2))
    await waitFor(owner.sync.status, (s) => s.error?.name === 'BackendResetError', 'the owner to report the reset')
    return { backend, owner, tab }
  }

  it('a backend reset, the tab resetting first: if it followed the old log meanwhile, it reports the reset again once the owner has reset, and a second reset brings it onto the new log', async () => {
    const { backend, owner, tab } = await wiped()
    await tab.sync.resetToBackend({ repush: true })
    // the tab pulls from the owner, which still serves the old log until it resets too
    await waitFor(tab.sync.status, (s) => s.head === 2, 'the tab to follow the old log')
    await owner.sync.resetToBackend({ repush: true })
    await waitFor(tab.sync.status, (s) => s.error?.name === 'BackendResetError', 'the tab to report the reset again')
    await tab.sync.resetToBackend({ repush: true })
    await within(Promise.all([owner.sync.flush(), tab.sync.flush()]), 'both to flush')
    const log = await backendLog(backend.current, 'reset')
    expect(log.map((e) => (e.args as { id: string }).id).sort()).toEqual(['o', 'o2', 't'])
    await waitFor(tab.sync.status, (st) => st.head === 3 && st.pending === 0, 'the tab at the new head')
    expect(tab.events().map((e) => e.id)).toEqual(log.map((e) => e.id))
    await Promise.all([tab.close(), owner.close()])
  })

  it('a backend reset: the owner and a tab each report it; after each resets with repush, both own events are on the new log', async () => {
    const { backend, owner, tab } = await wiped()
    await owner.sync.resetToBackend({ repush: true })
    await waitFor(tab.sync.status, (s) => s.error?.name === 'BackendResetError', 'the tab to report it too')
    await tab.sync.resetToBackend({ repush: true })
    await within(Promise.all([owner.sync.flush(), tab.sync.flush()]), 'both to flush')
    const log = await backendLog(backend.current, 'reset')
    expect(log.map((e) => (e.args as { id: string }).id).sort()).toEqual(['o', 'o2', 't'])
    await Promise.all([owner, tab].map((s) => waitFor(s.sync.status, (st) => st.head === 3 && st.pending === 0, 'both at the new head')))
    expect(tab.events().map((e) => e.id)).toEqual(log.map((e) => e.id))
    expect(owner.events().map((e) => e.id)).toEqual(log.map((e) => e.id))
    await Promise.all([tab.close(), owner.close()])
  })

  it('three stores opened at once all boot, one of them owning the storage', async () => {
    const { open } = setup()
    const tabs = await within(Promise.all([open(), open(), open()]), 'three stores to open at once')
    tabs[2]!.commit(set('z', 9))
    await Promise.all(tabs.map((s) => until(s, { z: 9 }, 'every tab to see it')))
    await Promise.all(tabs.map((s) => s.close()))
  })

  it('hundreds of events committed across tabs while the owner hands off twice: none whose persisted resolved is lost', async () => {
    const { backend, open } = setup()
    let owner = await open()
    const a = await open()
    const b = await open()
    const persisted: Promise<string>[] = []
    const commitMany = (s: Store<typeof schema>, prefix: string, n: number) => {
      for (let i = 0; i < n; i++) {
        const id = `${prefix}${i}`
        persisted.push(
          s.commit(set(id, i)).persisted.then(
            () => id,
            () => '',
          ),
        )
      }
    }
    commitMany(owner, 'o', 50)
    commitMany(a, 'a', 100)
    commitMany(b, 'b', 100)
    await owner.close()
    commitMany(a, 'c', 50)
    owner = await open() // a new tab, a client of a or b
    commitMany(owner, 'n', 20)
    const ids = (await Promise.all(persisted)).filter(Boolean)
    expect(ids.length).toBe(320) // every commit of an open tab gets acknowledged
    await within(Promise.all([a.sync.flush(), b.sync.flush(), owner.sync.flush()]), 'all to flush', 20_000)
    const log = await backendLog(backend, 'tabs')
    expect(new Set(log.map((e) => (e.args as { id: string }).id))).toEqual(new Set(ids))
    await Promise.all([a, b, owner].map((s) => waitFor(s.sync.status, (st) => st.head === log.length, 'every tab to reach the head')))
    for (const s of [a, b, owner]) expect(s.events().map((e) => e.id)).toEqual(log.map((e) => e.id))
    await Promise.all([a.close(), b.close(), owner.close()])
  })
})

describe('tabs running two versions of the app (a deploy while a tab stays open)', () => {
  // v2 adds a table and an event that v1 does not know; v1's events mean the same in both
  const v2 = defineSchema({
    tables: { ...schema.tables, notes: sql`CREATE TABLE notes (id TEXT PRIMARY KEY, text TEXT NOT NULL)` },
    events: {
      ...(Object.fromEntries(Object.entries(schema.events).map(([name, make]) => [name, make.definition])) as {
        [K in keyof typeof schema.events]: (typeof schema.events)[K]['definition']
      }),
      note: defineEvent<{ id: string; text: string }>({
        materialize: ({ id, text }) => sql`INSERT INTO notes (id, text) VALUES (${id}, ${text}) ON CONFLICT(id) DO UPDATE SET text = excluded.text`,
      }),
    },
  })
  const notes = (store: Store<typeof v2>) => store.query<{ id: string; text: string }>(sql`SELECT id, text FROM notes ORDER BY id`)

  it("an old and a new tab share one storage both ways round; neither loses the other version's events, in the storage or on the server", async () => {
    const backend = memoryBackend()
    const storage = sharedStorage()
    const unknown: string[] = []
    const open = <S extends typeof schema | typeof v2>(s: S) =>
      createStore({
        schema: s,
        storeId: 'versions',
        storage,
        dev: false,
        onWarning: () => {},
        onUnknownEvent: (e) => unknown.push(e.name),
        transport: localTransport(backend),
        sync: { minBackoffMs: 5, maxBackoffMs: 50 },
      }) as Promise<Store<S>>

    const old = await open(schema)
    await old.commit(set('a', 1)).confirmed
    const next = await open(v2) // a client of the old owner
    expect(asMap(items(next as never).value)).toEqual({ a: 1 })
    const mine = next.commit(v2.events.note({ id: 'a', text: 'hi' }), v2.events.set({ id: 'b', value: 2 }))
    expect(await within(mine.confirmed, 'the new tab commit to be confirmed')).toBe(3)
    await until(old, { a: 1, b: 2 }, 'the old owner to show what it knows of it')
    expect(unknown).toEqual(['note']) // the old owner keeps the event it cannot materialize, and says so once
    old.commit(set('c', 3))
    await until(next as never, { a: 1, b: 2, c: 3 }, 'the new tab to see the old owner commit')

    // the old tab closes: the new one takes the storage over, under its own schema
    await old.close()
    await within(next.commit(v2.events.note({ id: 'c', text: 'new owner' })).persisted, 'the new tab to own the storage')
    expect(notes(next).value).toEqual([
      { id: 'a', text: 'hi' },
      { id: 'c', text: 'new owner' },
    ])
    // an old tab opened now (a stale bookmark) is a client of the new owner
    const stale = await open(schema)
    expect(asMap(items(stale).value)).toEqual({ a: 1, b: 2, c: 3 })
    await within(stale.commit(set('d', 4)).confirmed, 'the old tab commit to be confirmed')
    await until(next as never, { a: 1, b: 2, c: 3, d: 4 }, 'the new owner to show it')
    await within(next.sync.flush(), 'the new owner to flush')
    expect((await backendLog(backend, 'versions')).map((e) => e.name)).toEqual(['set', 'note', 'set', 'set', 'note', 'set'])
    await Promise.all([stale.close(), next.close()])

    // from the storage alone: the old version boots (rebuilt under its schema) and keeps the new events,
    // and the new version opened after it still finds them
    const oldAgain = await open(schema)
    expect(asMap(items(oldAgain).value)).toEqual({ a: 1, b: 2, c: 3, d: 4 })
    expect(oldAgain.events().map((e) => e.name)).toEqual(['set', 'note', 'set', 'set', 'note', 'set'])
    await oldAgain.close()
    const newAgain = await open(v2)
    expect(notes(newAgain).value).toEqual([
      { id: 'a', text: 'hi' },
      { id: 'c', text: 'new owner' },
    ])
    expect(asMap(items(newAgain as never).value)).toEqual({ a: 1, b: 2, c: 3, d: 4 })
    await newAgain.close()
  })
})

describe('a store that is not the owner', () => {
  const uiSchema = itemsUiSchema
  const ui = (store: Store<typeof uiSchema>) => store.query<{ k: string; v: string }>(sql`SELECT k, v FROM ui`)

  it('keeps its local events in its own memory, and writes them to the storage when it becomes the owner', async () => {
    const storage = sharedStorage()
    const open = () => createStore({ schema: uiSchema, storeId: 'ui', storage, dev: false, onWarning: () => {} })
    const owner = await open()
    const tab = await open()
    await within(tab.commit(uiSchema.events.uiSet({ k: 'filter', v: 'done' })).persisted, 'a local commit')
    expect(ui(tab).value).toEqual([{ k: 'filter', v: 'done' }])
    await owner.commit(uiSchema.events.set({ id: 'a', value: 1 })).persisted
    await until(tab as never, { a: 1 }, 'the tab to see the owner commit')
    expect(ui(owner).value).toEqual([]) // UI state of one tab stays in that tab
    await owner.close()
    // the tab took over: its local row is still there, and in the storage for whoever opens it next
    // with no other tab left, only this one can acknowledge, by taking the storage over
    await within(tab.commit(uiSchema.events.set({ id: 'b', value: 2 })).persisted, 'the tab to own the storage')
    expect(ui(tab).value).toEqual([{ k: 'filter', v: 'done' }])
    await tab.close()
    const next = await open()
    expect(ui(next).value).toEqual([{ k: 'filter', v: 'done' }])
    expect(asMap(items(next as never).value)).toEqual({ a: 1, b: 2 })
    await next.close()
  })

  it("shows the owner's sync state while its link is in sync: offline when the owner cannot reach the server", async () => {
    const { open } = setup()
    const owner = await open()
    const tab = await open()
    await waitFor(tab.sync.status, (s) => s.state === 'synced', 'the tab to show synced')
    owner.sync.pause()
    await waitFor(tab.sync.status, (s) => s.state === 'offline', "the tab to show the owner's offline")
    tab.commit(set('t', 1))
    await waitFor(tab.sync.status, (s) => s.state === 'offline' && s.pending === 1, 'the commit pending, still offline')
    owner.sync.resume()
    await waitFor(tab.sync.status, (s) => s.state === 'synced' && s.pending === 0 && s.head === 1, 'synced again, the commit confirmed')
    await Promise.all([tab.close(), owner.close()])
  })

  it('sync.flush() rejects with no_transport, as a single store without a transport does, when the owner has no transport', async () => {
    const { open } = setup(false)
    const owner = await open()
    const tab = await open()
    await within(tab.commit(set('t', 1)).persisted, "the owner's acknowledgement")
    await expect(owner.sync.flush()).rejects.toMatchObject({ name: 'TidelogError', code: 'no_transport' })
    await expect(tab.sync.flush()).rejects.toMatchObject({
      name: 'TidelogError',
      code: 'no_transport',
      message: expect.stringContaining('the tab that owns the storage has no transport'),
    })
    await Promise.all([tab.close(), owner.close()])
  })

  it('a waiting sync.flush() rejects with no_transport once the lock passes to a tab without a transport', async () => {
    const backend = memoryBackend()
    const storage = sharedStorage()
    const open = (withServer: boolean) =>
      createStore({
        schema,
        storeId: 'handoff',
        storage,
        dev: false,
        onWarning: () => {},
        transport: withServer ? localTransport(backend) : undefined,
        sync: { minBackoffMs: 5, maxBackoffMs: 50 },
      })
    const owner = await open(true)
    const bare = await open(false) // first in line for the lock
    const tab = await open(true)
    owner.sync.pause()
    await within(tab.commit(set('t', 1)).persisted, "the owner's acknowledgement")
    const flushed = tab.sync.flush()
    await owner.close()
    await expect(within(flushed, 'the verdict on the flush')).rejects.toMatchObject({ name: 'TidelogError', code: 'no_transport' })
    await expect(bare.sync.flush()).rejects.toMatchObject({ code: 'no_transport' })
    await Promise.all([tab.close(), bare.close()])
  })

  it('sync.flush() keeps waiting while an owner that has a transport is offline, and resolves once it is back', async () => {
    const { open } = setup()
    const owner = await open()
    const tab = await open()
    owner.sync.pause()
    tab.commit(set('t', 1))
    let settled = 'no'
    const flushed = tab.sync.flush().then(
      () => (settled = 'resolved'),
      (error: Error) => (settled = `rejected: ${error.message}`),
    )
    await waitFor(tab.sync.status, (s) => s.state === 'offline' && s.pending === 1, "the tab to show the owner's offline")
    await new Promise((r) => setTimeout(r, 200))
    expect(settled).toBe('no')
    owner.sync.resume()
    await within(flushed, 'the flush once the owner is back')
    expect(settled).toBe('resolved')
    await Promise.all([tab.close(), owner.close()])
  })

  it('pause() stops its link to the owner; resume() catches up', async () => {
    const { open } = setup(false)
    const owner = await open()
    const tab = await open()
    tab.sync.pause()
    await owner.commit(set('p', 1)).persisted
    const mine = tab.commit(set('q', 2))
    await owner.commit(set('r', 3)).persisted
    expect(asMap(items(tab).value)).toEqual({ q: 2 })
    expect(asMap(items(owner).value)).toEqual({ p: 1, r: 3 })
    tab.sync.resume()
    await within(mine.persisted, 'the acknowledgement after resume')
    await Promise.all([owner, tab].map((s) => until(s, { p: 1, q: 2, r: 3 }, 'both to converge')))
    await Promise.all([tab.close(), owner.close()])
  })

  it("an acknowledged event that the owner's onConflict drops rejects its receipt.confirmed with ConflictDroppedError", async () => {
    const backend = memoryBackend()
    const storage = sharedStorage()
    // drop every pending `set` of value 13 when a rebase happens
    const onConflict = ({ local }: { local: PendingEvent[] }) => local.filter((e) => !(e.name === 'set' && (e.args as { value: number }).value === 13))
    const open = (s: Storage) =>
      createStore({
        schema,
        storeId: 'drop',
        storage: s,
        dev: false,
        onWarning: () => {},
        onConflict,
        transport: localTransport(backend),
        sync: { minBackoffMs: 5, maxBackoffMs: 50 },
      })
    const owner = await open(storage)
    const tab = await open(storage)
    const other = await open(memoryStorage())
    owner.sync.pause()
    const doomed = tab.commit(set('d', 13))
    await within(doomed.persisted, "the owner's acknowledgement")
    await within(other.commit(set('x', 1)).confirmed, 'the other client to confirm')
    owner.sync.resume()
    await expect(within(doomed.confirmed, 'the verdict')).rejects.toMatchObject({
      name: 'ConflictDroppedError',
      message: expect.stringContaining('dropped by the rebase in the tab that owns the storage'),
    })
    await until(tab, { x: 1 }, 'the tab to follow the owner rebase')
    await Promise.all([tab.close(), owner.close(), other.close()])
  })
})

describe('the owner side of the tab link', () => {
  it('forgets a tab that went silent without a bye (reloaded or killed): it sends it nothing more', async () => {
    const name = `ttl-${randomUUID()}`
    const heartbeatMs = 40 // a tab silent for 4 heartbeats is forgotten
    const storage: Storage = { ...memoryStorage(), tabs: broadcastTabLinks(name, { heartbeatMs, requestTimeoutMs: 500 }) }
    const owner = await createStore({ schema, storeId: 'ttl', storage, dev: false, onWarning: () => {} })
    // a tab made of a bare channel: it pulls once and then never pings, as a page that was killed
    const ghost = new BroadcastChannel(`tidelog-tabs:${name}:ttl`)
    const heard: Record<string, any>[] = []
    let notify = () => {}
    ghost.onmessage = (e: MessageEvent) => (heard.push(e.data), notify())
    const next = (pred: (m: Record<string, any>) => boolean, what: string) =>
      within(
        new Promise<Record<string, any>>((resolve) => {
          const check = () => {
            const m = heard.find(pred)
            if (m) resolve(m)
          }
          notify = check
          check()
        }),
        what,
      )
    ghost.postMessage({ v: 1, type: 'ping', from: 'ghost', to: '*' })
    const hostId = (await next((m) => m.type === 'host' && m.to === 'ghost', 'the owner to answer the ping')).from as string
    ghost.postMessage({ v: 1, type: 'pull', rid: 1, storeId: 'ttl', since: 0, from: 'ghost', to: hostId })
    await next((m) => m.rid === 1, 'the pull answer')
    owner.commit(set('a', 1))
    await next((m) => m.type === 'events' && m.to === 'ghost' && m.pending?.length === 1, 'a live view while the ghost is fresh')
    await new Promise((r) => setTimeout(r, 5 * heartbeatMs))
    // a live tab joins; the view it gets after the next commit would follow the ghost's, were it still served
    const tab = await createStore({ schema, storeId: 'ttl', storage, dev: false, onWarning: () => {} })
    heard.length = 0
    owner.commit(set('b', 2))
    await next((m) => m.type === 'events' && m.to !== 'ghost' && m.pending?.length === 2, 'the live tab to get the view')
    expect(heard.filter((m) => m.to === 'ghost')).toEqual([])
    ghost.close()
    await Promise.all([tab.close(), owner.close()])
  })
})

describe('the sync engine with an owner tab upstream (S7)', () => {
  it("stops with BackendResetError when a live owner notice names another backendId, and takes '' as no verdict", async () => {
    const { createSyncEngine } = await import('../src/sync-engine.js')
    let handlers: TransportHandlers | undefined
    const transport: Transport = {
      connect: async (h) => {
        handlers = h
        h.onStatus({ state: 'online' })
      },
      pull: async () => ({ type: 'pulled', events: [], head: 0, backendId: 'X', more: false, pending: [] }),
      push: async () => ({ type: 'queued' }),
      close: async () => {},
    }
    let known: string | undefined
    const states: string[] = []
    let changed = () => {}
    const engine = createSyncEngine(transport, {
      storeId: 's',
      head: () => 0,
      backendId: () => known,
      pendingCount: () => 0,
      pendingBatch: () => [],
      applyUpstream: (_events, id) => {
        if (id) known = id
      },
      confirm() {},
      anyHead: () => false,
      setState: (state, error) => {
        states.push(error ? `${state}:${error.name}:${(error as { actual?: string }).actual}` : state)
        changed()
      },
    })
    const until = (what: string) =>
      within(
        new Promise<void>((resolve) => {
          changed = () => {
            if (states.includes(what)) resolve()
          }
          changed()
        }),
        what,
      )
    engine.start()
    await until('synced')
    // were '' a verdict, sync would stop on it and never judge 'Y'
    handlers!.onEvents([], 0, { pending: [], backendId: '' })
    handlers!.onEvents([], 0, { pending: [], backendId: 'Y' })
    await until('error:BackendResetError:Y')
    await engine.close()
  })
})

describe('eventlog.applyUpstream() with a given pending list (T1)', () => {
  it('reorders and drops pending events with no upstream events, state following the list', async () => {
    const { loadSqlJs } = await import('../src/database.js')
    const { createEventLog } = await import('../src/eventlog.js')
    const log = createEventLog(await loadSqlJs(), schema, { dev: false, onWarning: () => {}, onUnknownEvent: () => {} })
    const ev = (id: string, name: 'set' | 'add', args: object) => ({ id, name, args: args as never, clientId: 'c', sessionId: 's', createdAt: 0 })
    const p1 = ev('c:1', 'set', { id: 'x', value: 1 })
    const p2 = ev('c:2', 'add', { id: 'x', by: 10 })
    const p3 = ev('c:3', 'set', { id: 'y', value: 3 })
    log.commit([p1, p2], false)
    const rows = () => log.db.all({ sql: 'SELECT id, value FROM items ORDER BY id', params: [] })
    expect(rows()).toEqual([{ id: 'x', value: 11 }])
    // p2 before p1: the add finds no row, then the set makes it
    log.applyUpstream([], undefined, [p2, p1])
    expect(log.readPending().map((e) => e.id)).toEqual(['c:2', 'c:1'])
    expect(rows()).toEqual([{ id: 'x', value: 1 }])
    // appended (the fast path), then p2 dropped
    log.applyUpstream([], undefined, [p2, p1, p3])
    expect(rows()).toEqual([
      { id: 'x', value: 1 },
      { id: 'y', value: 3 },
    ])
    const change = log.applyUpstream([], undefined, [p1, p3])
    expect(change.dropped.get('c:2')).toEqual({ reason: 'conflict', by: 'onConflict' })
    expect(log.readPending().map((e) => e.id)).toEqual(['c:1', 'c:3'])
    // the confirmed front and the appended tail in one step (the fast path)
    log.applyUpstream([{ ...p1, seq: 1 }], undefined, [p3, p2])
    expect(log.head).toBe(1)
    expect(log.readPending().map((e) => e.id)).toEqual(['c:3', 'c:2'])
    expect(rows()).toEqual([
      { id: 'x', value: 11 },
      { id: 'y', value: 3 },
    ])
    // everything rolled back: the state is the confirmed one
    log.applyUpstream([], undefined, [])
    expect(rows()).toEqual([{ id: 'x', value: 1 }])
    expect(log.pendingCount).toBe(0)
    log.close()
  })
})
