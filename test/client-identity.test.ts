/**
 * A client never hands out an event id twice (R7). Local storage that lost
 * records may have lost events the backend already holds, so the client's
 * counter cannot be trusted: it goes on under a fresh clientId, says so, and
 * re-learns the log from the backend. Where the loss cannot be seen locally,
 * an id that comes back as another event is never confirmed as this one.
 */
import 'fake-indexeddb/auto'
import { mkdtemp, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { del, createStore as idbStore } from 'idb-keyval'
import { ConflictDroppedError, createStore, type JournalRecord, localTransport, type Storage, type Store, sql } from 'tidelog'
import { fileStorage } from 'tidelog/adapters/filesystem'
import { indexedDbStorage } from 'tidelog/adapters/indexeddb'
import { memoryBackend } from 'tidelog/server'
import { afterEach, describe, expect, it } from 'vitest'
import { withoutSnapshots } from './fixtures/persistence-schema.js'
import { todoSchema } from './helpers/todo-schema.js'
import { backendLog, within } from './helpers/wait.js'

const { todoCreated } = todoSchema.events
const STORE = 'identity'
const open: Store<any>[] = []
const dirs: string[] = []
afterEach(async () => {
  await Promise.all(open.splice(0).map((s) => s.close()))
  await Promise.all(dirs.splice(0).map((d) => rm(d, { recursive: true, force: true })))
})

async function start(storage: Storage, backend: ReturnType<typeof memoryBackend>, warnings: string[] = []) {
  const store = await createStore({ schema: todoSchema, storeId: STORE, storage, transport: localTransport(backend), onWarning: (w) => warnings.push(w) })
  open.push(store)
  return store
}
const stop = async (store: Store<any>) => {
  open.splice(open.indexOf(store), 1)
  await store.close()
}

/** Session one: 5 events confirmed by the backend, then 5 more made offline (durable, never pushed). */
async function firstSession(storage: Storage, backend: ReturnType<typeof memoryBackend>) {
  const a = await start(storage, backend)
  for (let i = 1; i <= 5; i++) a.commit(todoCreated({ id: `synced-${i}`, text: 'a' }))
  await within(a.sync.flush(), 'the first five events to be confirmed')
  a.sync.pause()
  for (let i = 1; i <= 5; i++) await a.commit(todoCreated({ id: `offline-${i}`, text: 'a' })).persisted
  const clientId = a.clientId
  await stop(a)
  return clientId
}

/** Reopens, commits one event and checks that nothing was confused with the events the backend already holds. */
async function secondSession(storage: Storage, backend: ReturnType<typeof memoryBackend>, oldClientId: string) {
  const warnings: string[] = []
  const b = await start(storage, backend, warnings)
  expect(b.clientId).not.toBe(oldClientId)
  expect(warnings.join('\n')).toMatch(new RegExp(`continues as ${b.clientId} \\(was ${oldClientId}\\)`))
  const receipt = b.commit(todoCreated({ id: 'after-damage', text: 'b' }))
  expect(receipt.event.id).toBe(`${b.clientId}:1`)
  const seq = await within(receipt.confirmed, 'the new event to be confirmed')
  const log = await backendLog(backend, STORE)
  expect(log.find((e) => e.seq === seq)).toMatchObject({ id: receipt.event.id, name: 'todoCreated', args: { id: 'after-damage' } })
  const ids = log.map((e) => e.id)
  expect(new Set(ids).size).toBe(ids.length)
  // what the backend held is re-learned
  await within(b.sync.flush(), 'the second session to settle')
  const rows = b.query<{ id: string }>(sql`SELECT id FROM todos ORDER BY id`).value.map((r) => r.id)
  for (let i = 1; i <= 5; i++) expect(rows).toContain(`synced-${i}`)
  expect(rows).toContain('after-damage')
  return b
}

describe('a client whose local storage lost records', () => {
  it('fileStorage: a damaged record mid-journal makes it go on under a fresh clientId', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'tidelog-identity-'))
    dirs.push(dir)
    const backend = memoryBackend()
    const storage = () => withoutSnapshots(fileStorage({ dir }))
    const old = await firstSession(storage(), backend)
    // flip one byte a third into the journal: that record and every later one are lost
    const folder = join(dir, (await readdir(dir)).find((n) => !n.startsWith('.'))!)
    const segment = join(folder, (await readdir(folder)).filter((n) => n.startsWith('journal')).sort()[0]!)
    const bytes = await readFile(segment)
    const at = Math.floor(bytes.length / 3)
    bytes[at] = bytes[at]! ^ 0x40
    await writeFile(segment, bytes)
    const b = await secondSession(storage(), backend, old)
    // the new identity sticks across a clean reopen
    const clientId = b.clientId
    await stop(b)
    const warnings: string[] = []
    const c = await start(storage(), backend, warnings)
    expect(c.clientId).toBe(clientId)
    expect(warnings).toEqual([])
  })

  it('indexedDbStorage: a journal record gone missing makes it go on under a fresh clientId', async () => {
    const name = `tidelog-identity-${Math.random().toString(36).slice(2)}`
    const backend = memoryBackend()
    const storage = () => withoutSnapshots(indexedDbStorage({ name }))
    const old = await firstSession(storage(), backend)
    await del(`${STORE}/j/${String(3).padStart(15, '0')}`, idbStore(name, 'tidelog'))
    await secondSession(storage(), backend, old)
  })

  it('never confirms another event under a reused id when the loss cannot be seen locally', async () => {
    const backend = memoryBackend()
    // a storage that forgets records without a trace, as a lost file or a restored old backup would
    let kept: JournalRecord[] = []
    let forgetFrom = Infinity
    const amnesic: Storage = {
      name: 'amnesic',
      async open() {
        return {
          load: async () => ({ records: (kept = kept.filter((r) => r.pos < forgetFrom)).map((r) => structuredClone(r)), dropped: [] }),
          append: async (records) => void kept.push(...structuredClone(records)),
          saveSnapshot: async () => {},
          close: async () => {},
        }
      },
    }
    const a = await start(amnesic, backend)
    for (let i = 1; i <= 3; i++) a.commit(todoCreated({ id: `first-${i}`, text: 'a' }))
    await within(a.sync.flush(), 'three confirmed events')
    const clientId = a.clientId
    await stop(a)
    forgetFrom = 2 // everything after the identity record vanishes
    const b = await start(amnesic, backend)
    expect(b.clientId).toBe(clientId) // nothing local tells it apart from a clean restart
    b.sync.pause()
    const reused = b.commit(todoCreated({ id: 'reused', text: 'b' }))
    const unread = b.commit(todoCreated({ id: 'reused-2', text: 'b' })) // its receipt is read only after the drop
    expect(reused.event.id).toBe(`${clientId}:1`) // the same id as first-1 on the backend
    b.sync.resume()
    const outcome = await within(
      reused.confirmed.then(
        (seq) => ({ seq }),
        (error: unknown) => ({ error }),
      ),
      'the reused id to settle',
    )
    expect(outcome).toMatchObject({ error: expect.any(ConflictDroppedError) })
    expect(String((outcome as { error: Error }).error.message)).toMatch(/id collision/)
    // read late, once the rebase dropped it, a receipt still names the collision, not the seq of the other event
    await within(b.sync.flush(), 'nothing left pending')
    expect(unread.event.id).toBe(`${clientId}:2`) // first-2's id
    const late = await unread.confirmed.then(
      (seq) => ({ seq }),
      (error: unknown) => ({ error }),
    )
    expect(late).toMatchObject({ error: expect.any(ConflictDroppedError) })
    expect(String((late as { error: Error }).error.message)).toMatch(/id collision/)
    // and the next event gets an id past everything the backend holds from this client
    const next = b.commit(todoCreated({ id: 'next', text: 'b' }))
    const seq = await within(next.confirmed, 'the next event to be confirmed')
    const log = await backendLog(backend, STORE)
    expect(log.find((e) => e.seq === seq)?.args).toEqual({ id: 'next', text: 'b' })
    const ids = log.map((e) => e.id)
    expect(new Set(ids).size).toBe(ids.length)
    expect(log.filter((e) => (e.args as { id: string }).id === 'reused')).toEqual([])
  })
})
