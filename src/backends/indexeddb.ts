import { promisifyRequest } from 'idb-keyval'
import { errorText, StorageError } from '../errors.js'
import { strictStore } from '../idb-strict-store.js'
import { randomId } from '../ids.js'
import { type ConfirmedEvent, MAX_PULL_LIMIT, type PullResponse, type PushResponse } from '../protocol.js'
import type { SyncBackend } from '../transport.js'
import { createHeadListeners } from './head-listeners.js'
import { judgePush, type PushVerdict } from './judge-push.js'

const STORE = 'log'
// Keys: `e:<storeId>:<seq, 16 digits>` event, `i:<storeId>:<eventId>` seq of an id,
// `h:<storeId>` head, `backendId`, `epoch`. storeIds never hold ':', so prefixes cannot collide,
// and zero padding makes string order equal seq order for range reads.
const pad = (seq: number) => String(seq).padStart(16, '0')
const eventKey = (storeId: string, seq: number) => `e:${storeId}:${pad(seq)}`
const idKey = (storeId: string, id: string) => `i:${storeId}:${id}`
const headKey = (storeId: string) => `h:${storeId}`

/** Options of `indexedDbBackend`. */
export interface IndexedDbBackendOptions {
  /** IndexedDB database name holding the logs. */
  name: string
  /** Called when a write finds that a newer host claimed the log (its epoch is higher than ours). */
  onFenced?: (newerEpoch: number) => void
}

/** A `SyncBackend` whose logs live in IndexedDB, plus the fencing epoch of whoever hosts them. */
export interface IndexedDbBackend extends SyncBackend {
  /**
   * Makes this instance the log's only writer: increments the stored epoch and
   * returns it. Pushes from an instance whose epoch was overtaken then fail.
   */
  claimEpoch(): Promise<number>
}

const read = <T>(store: IDBObjectStore, key: string) => promisifyRequest(store.get(key) as IDBRequest<T | undefined>)

/**
 * The log a `host: 'auto'` tab serves, kept in IndexedDB so that the next tab
 * to become host finds every event. Writes commit with strict durability
 * before `pushed` is answered (PROTOCOL.md backend rule 2).
 * @example const backend = indexedDbBackend({ name: 'tidelog-host:todos' })
 */
export function indexedDbBackend(options: IndexedDbBackendOptions): IndexedDbBackend {
  const db = strictStore(options.name, STORE)
  const listeners = createHeadListeners()
  let fence: number | undefined
  let backendIdP: Promise<string> | undefined

  const fail = (what: string, error: unknown): never => {
    if (error instanceof Error && (error.name === 'ProtocolViolation' || error.name === 'StorageError')) throw error
    throw new StorageError(`IndexedDB "${options.name}": ${what} failed: ${errorText(error)}. Check that IndexedDB is available and not full.`, {
      cause: error,
    })
  }
  // The id is made once per database (a wiped database gets a new one), in a write transaction so two tabs agree.
  const backendId = () =>
    (backendIdP ??= db
      .use('readwrite', async (store) => {
        let id = await read<string>(store, 'backendId')
        if (id === undefined) {
          id = randomId()
          store.put(id, 'backendId')
        }
        await promisifyRequest(store.transaction)
        return id
      })
      .catch((error) => {
        backendIdP = undefined
        return fail('opening the log', error)
      }))

  return {
    async claimEpoch() {
      await backendId()
      fence = await db
        .use('readwrite', async (store) => {
          const epoch = ((await read<number>(store, 'epoch')) ?? 0) + 1
          store.put(epoch, 'epoch')
          await promisifyRequest(store.transaction)
          return epoch
        })
        .catch((error) => fail('claiming the log', error))
      return fence
    },
    async pull(storeId, since, limit): Promise<PullResponse> {
      const id = await backendId()
      const n = Math.max(1, Math.min(limit, MAX_PULL_LIMIT))
      const [events, head] = await db
        .use('readonly', (store) =>
          Promise.all([
            promisifyRequest(store.getAll(IDBKeyRange.bound(eventKey(storeId, since + 1), eventKey(storeId, since + n)), n) as IDBRequest<ConfirmedEvent[]>),
            read<number>(store, headKey(storeId)),
          ]),
        )
        .catch((error) => fail('pull', error))
      return { type: 'pulled', events, head: head ?? 0, backendId: id, more: since + events.length < (head ?? 0) }
    },
    async push(storeId, request): Promise<PushResponse> {
      const { parentSeq, events } = request
      const id = await backendId()
      let appended = false
      const result = await db
        .use('readwrite', async (store): Promise<PushResponse> => {
          // One transaction reads the head, the epoch and the ids, judges and appends: nothing can interleave.
          const [head = 0, epoch = 0, ...known] = await Promise.all([
            read<number>(store, headKey(storeId)),
            read<number>(store, 'epoch'),
            ...events.map((e) => read<number>(store, idKey(storeId, e.id))),
          ])
          if (fence !== undefined && epoch > fence) {
            store.transaction.abort()
            options.onFenced?.(epoch)
            throw new StorageError(`IndexedDB "${options.name}": a newer host (epoch ${epoch}) took over this log; this one (epoch ${fence}) no longer writes.`)
          }
          let verdict: PushVerdict
          try {
            verdict = judgePush({ head, seqOf: (eventId) => known[events.findIndex((e) => e.id === eventId)], backendId: id }, parentSeq, events, request)
          } catch (error) {
            store.transaction.abort()
            throw error
          }
          if (verdict.kind === 'retry') return { type: 'pushed', firstSeq: verdict.firstSeq, head, backendId: id }
          if (verdict.kind === 'rejected') return { type: 'rejected', reason: 'behind', head }
          events.forEach((e, i) => {
            const seq = head + 1 + i
            const event: ConfirmedEvent = { seq, id: e.id, name: e.name, args: e.args, clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt }
            store.put(event, eventKey(storeId, seq))
            store.put(seq, idKey(storeId, e.id))
          })
          store.put(head + events.length, headKey(storeId))
          await promisifyRequest(store.transaction)
          appended = true
          return { type: 'pushed', firstSeq: head + 1, head: head + events.length, backendId: id }
        })
        .catch((error) => fail('push', error))
      if (appended) {
        const head = result.head
        listeners.notify(storeId, head)
      }
      return result
    },
    subscribe: listeners.subscribe,
    async close() {
      listeners.clear()
      db.close()
    },
  }
}
