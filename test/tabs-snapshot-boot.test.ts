/**
 * A client tab boots from the storage's snapshot (PROTOCOL.md, Tabs: how a client tab boots):
 * indexedDbStorage on fake-indexeddb, its tab link a real BroadcastChannel, the owner syncing
 * with a memory backend. What the tab pulls from the owner is counted on a channel of its own
 * that hears every message of the link.
 */
import 'fake-indexeddb/auto'
import { randomUUID } from 'node:crypto'
import { get, keys, createStore as keyvalStore, set as put } from 'idb-keyval'
import { createStore, localTransport, type Snapshot, type Storage, type Store, sql } from 'tidelog'
import { indexedDbStorage } from 'tidelog/adapters/indexeddb'
import { memoryBackend } from 'tidelog/server'
import { describe, expect, it } from 'vitest'
import { itemsUiSchema } from './helpers/items-ui-schema.js'
import { waitFor, within } from './helpers/wait.js'

const schema = itemsUiSchema
type S = Store<typeof schema>
const set = (id: string, value: number) => schema.events.set({ id, value })
const STORE = 'snap'
const count = (store: S) => store.query<{ n: number }>(sql`SELECT count(*) AS n FROM items`).value[0]!.n
const ui = (store: S) => store.query<{ k: string; v: string }>(sql`SELECT k, v FROM ui`).value
const value = (store: S, id: string) => store.query<{ value: number }>(sql`SELECT value FROM items WHERE id = ${id}`).value[0]?.value

/** Counts the events in every `pulled` answer on the tab link of `name` (the owner's pages to the client tabs). */
function countPulled(name: string) {
  const bc = new BroadcastChannel(`tidelog-tabs:${name}:${STORE}`)
  const seen = { events: 0, pages: 0 }
  bc.onmessage = (e: MessageEvent) => {
    const m = e.data as { type?: string; events?: unknown[] }
    if (m.type !== 'pulled') return
    seen.pages++
    seen.events += m.events?.length ?? 0
  }
  return { seen, close: () => bc.close() }
}

const open = (storage: Storage, backend: ReturnType<typeof memoryBackend> | undefined) =>
  createStore({
    schema,
    storeId: STORE,
    storage,
    dev: false,
    onWarning: () => {},
    transport: backend && localTransport(backend),
    sync: { minBackoffMs: 5, maxBackoffMs: 50 },
  })

/**
 * An owner over a storage whose snapshot holds `confirmed` events, one pending event and one local
 * event, and whose journal after the snapshot holds `after` confirmed events and one pending one.
 */
async function ownerWithSnapshot(confirmed: number, after: number) {
  const name = `tabs-snap-${randomUUID()}`
  const storage = indexedDbStorage({ name })
  const backend = memoryBackend()
  let owner = await open(storage, backend)
  for (let i = 0; i < confirmed; i += 100) owner.commit(...Array.from({ length: Math.min(100, confirmed - i) }, (_, j) => set(`c${i + j}`, i + j)))
  await within(owner.sync.flush(), 'the confirmed part to reach the server', 30_000)
  owner.sync.pause()
  owner.commit(set('sp', 1)) // pending in the snapshot; confirmed once the owner is back
  await owner.commit(schema.events.uiSet({ k: 'filter', v: 'owner' })).persisted
  await owner.close() // a snapshot at close
  owner = await open(storage, backend)
  for (let i = 0; i < after; i++) owner.commit(set(`a${i}`, i))
  await within(owner.sync.flush(), 'the events after the snapshot to be confirmed')
  owner.sync.pause()
  await owner.commit(set('p', 7)).persisted // pending in the journal only
  return { name, storage, backend, owner, head: confirmed + 1 + after }
}

describe('a client tab boots from the storage snapshot', () => {
  it("boots with the data, pulls only what follows the snapshot, leaves the owner's local events out and mints ids under its own clientId", async () => {
    const { name, storage, backend, owner, head } = await ownerWithSnapshot(3000, 4)
    expect(owner.sync.status.value.head).toBe(head)
    const snapshot = await storage.tabs!.peek!(STORE)
    expect(snapshot?.schemaHash).toBe(schema.hash)
    const pulled = countPulled(name)
    const tab = await open(storage, backend)
    // the confirmed part, the snapshot's pending event (confirmed since) and the owner's pending event
    expect(count(tab)).toBe(3000 + 1 + 4 + 1)
    expect(value(tab, 'p')).toBe(7)
    expect(tab.sync.status.value.head).toBe(head)
    expect(
      tab
        .events()
        .filter((e) => e.seq === null)
        .map((e) => (e.args as { id: string }).id),
    ).toEqual(['p'])
    // one page: the confirmed events after the snapshot (the snapshot's own head is 3000, its pending event came later)
    expect(pulled.seen.events).toBe(1 + 4)
    expect(ui(tab)).toEqual([])
    expect(ui(owner)).toEqual([{ k: 'filter', v: 'owner' }])

    expect(tab.clientId).not.toBe(owner.clientId)
    const mine = tab.commit(set('t', 1), schema.events.uiSet({ k: 'filter', v: 'tab' }))
    expect(mine.events.map((e) => e.id.split(':')[0])).toEqual([tab.clientId, tab.clientId])
    await within(mine.persisted, "the owner's acknowledgement")
    expect(ui(tab)).toEqual([{ k: 'filter', v: 'tab' }])
    owner.sync.resume()
    expect(await within(mine.confirmed, 'the server to confirm the tab commit')).toBe(head + 2)
    await waitFor(owner.sync.status, (s) => s.head === head + 2 && s.pending === 0, 'the owner at the head')
    expect(tab.events().map((e) => e.id)).toEqual(owner.events().map((e) => e.id))
    pulled.close()
    await Promise.all([tab.close(), owner.close()])
  }, 60_000)

  it('a tab booted from the snapshot takes the storage over when the owner closes, with its own events on top', async () => {
    const { storage, backend, owner, head } = await ownerWithSnapshot(200, 1)
    const tab = await open(storage, backend)
    const acked = tab.commit(set('t', 1))
    await within(acked.persisted, "the owner's acknowledgement")
    await owner.close()
    const late = tab.commit(set('u', 2)) // acknowledged once this tab owns the storage
    await within(late.persisted, 'the tab to own the storage')
    await within(tab.sync.flush(), 'the tab to flush as the owner')
    expect(count(tab)).toBe(200 + 1 + 1 + 1 + 2)
    expect(await within(late.confirmed, 'the late commit confirmed')).toBe(head + 3)
    await tab.close()
    const again = await open(storage, backend)
    expect(count(again)).toBe(200 + 1 + 1 + 1 + 2)
    expect(again.sync.status.value.head).toBe(head + 3)
    await again.close()
  }, 60_000)

  const fallbacks: [string, (s: Storage) => Promise<Snapshot | undefined>][] = [
    [
      'the peek fails',
      async () => {
        throw new Error('no peeking here')
      },
    ],
    ['the peek finds nothing', async () => undefined],
    ['the snapshot was made under another schema', async (s) => ({ ...(await s.tabs!.peek!(STORE))!, schemaHash: 'another' })],
  ]
  it.each(fallbacks)(
    'pulls the whole log from the owner when %s',
    async (_, peek) => {
      const { name, storage, backend, owner, head } = await ownerWithSnapshot(300, 2)
      const peeking: Storage = { name: storage.name, open: storage.open, tabs: { ...storage.tabs!, peek: () => peek(storage) } }
      const pulled = countPulled(name)
      const tab = await open(peeking, backend)
      expect(count(tab)).toBe(300 + 1 + 2 + 1)
      expect(pulled.seen.events).toBe(head)
      expect(ui(tab)).toEqual([])
      const mine = tab.commit(set('t', 1))
      expect(mine.event.id.startsWith(`${tab.clientId}:`)).toBe(true)
      await within(mine.persisted, "the owner's acknowledgement")
      pulled.close()
      await Promise.all([tab.close(), owner.close()])
    },
    60_000,
  )

  it("starts over from an empty log when the snapshot is not the owner's log (another backend): the tab shows the owner's data only", async () => {
    const other = await ownerWithSnapshot(50, 0)
    await other.owner.close()
    const name = `tabs-snap-${randomUUID()}`
    const storage = indexedDbStorage({ name })
    const backend = memoryBackend()
    const owner = await open(storage, backend)
    // further than the snapshot's head, so that only the backendId tells the logs apart
    for (let i = 0; i < 60; i++) owner.commit(set(`o${i}`, i))
    await within(owner.sync.flush(), 'the owner to sync')
    // the tab is handed the other storage's snapshot: 51 confirmed events under another backendId
    const wrong: Storage = { name: storage.name, open: storage.open, tabs: { ...storage.tabs!, peek: () => other.storage.tabs!.peek!(STORE) } }
    const tab = await open(wrong, backend)
    expect(count(tab)).toBe(60)
    expect(value(tab, 'c0')).toBeUndefined()
    expect(tab.sync.status.value.head).toBe(60)
    expect(tab.sync.status.value.error).toBeUndefined()
    await within(tab.commit(set('t', 1)).confirmed, 'the tab commit to be confirmed')
    await Promise.all([tab.close(), owner.close()])
  }, 60_000)
})

describe("indexedDbStorage's tabs.peek", () => {
  it('reads the newest intact snapshot while another store holds the lock, and repairs nothing', async () => {
    const name = `tabs-peek-${randomUUID()}`
    const storage = indexedDbStorage({ name })
    expect(await storage.tabs!.peek!(STORE)).toBeUndefined() // nothing stored yet
    const handle = await storage.open(STORE)
    await handle.load()
    await handle.append([{ pos: 1, t: 'init', clientId: 'c' }])
    await handle.saveSnapshot({ position: 1, schemaHash: 'h', bytes: new Uint8Array([1, 2, 3]) })
    await handle.append([{ pos: 2, t: 'reset', pending: [] }])
    await handle.saveSnapshot({ position: 2, schemaHash: 'h', bytes: new Uint8Array([4, 5, 6]) })
    // the newest snapshot's bytes no longer match their checksum
    const raw = keyvalStore(name, 'tidelog')
    const newest = `${STORE}/s/${String(2).padStart(15, '0')}`
    const stored = await get<{ bytes: Blob }>(newest, raw)
    const bytes = new Uint8Array(await stored!.bytes.arrayBuffer())
    bytes[0] = 99
    await put(newest, { ...stored, bytes: new Blob([bytes]) }, raw)
    const before = (await keys(raw)).sort()
    const peeked = await storage.tabs!.peek!(STORE)
    expect({ position: peeked?.position, bytes: [...(peeked?.bytes ?? [])] }).toEqual({ position: 1, bytes: [1, 2, 3] })
    expect((await keys(raw)).sort()).toEqual(before) // the damaged snapshot is left for the lock holder's load
    await handle.close()
  })
})
