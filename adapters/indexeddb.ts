import { get, promisifyRequest, setMany } from 'idb-keyval'
import { checksum64 } from '../src/checksum64.js'
import { crc32 } from '../src/crc32.js'
import { StorageError, StorageLockedError } from '../src/errors.js'
import { strictStore } from '../src/idb-strict-store.js'
import { memoryStorage } from '../src/memory-storage.js'
import type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions, TabLinks } from '../src/storage.js'
import { type LogReader, loadLog, withStoragePolicy } from '../src/storage-policy.js'
import { broadcastTabLinks } from '../transports/tab-link.js'

// One object store, 'tidelog', in the database named by the caller. Keys:
//   <storeId>/j/<pos, 15 digits>       a journal record
//   <storeId>/s/<position, 15 digits>  a snapshot { position, schemaHash, bytes, sum }
// The two newest snapshots are kept, and the journal after the older one, so either can boot the store.
// A snapshot's bytes are a Blob (browsers keep it as a file beside the database and read it back 2-3x
// faster than a large Uint8Array value, which is cloned through the database); older versions stored
// the Uint8Array itself, which is still read. `sum` is src/checksum64.ts's (a sixth of CRC-32's time in
// JavaScript, and checking it is boot time); snapshots of older versions carry `crc` (CRC-32) instead.

/** Options of `indexedDbStorage`. */
export interface IndexedDbStorageOptions {
  /** IndexedDB database name; one database holds any number of storeIds. */
  name: string
  /** Ask the browser to exempt this origin's storage from eviction (`navigator.storage.persist()`). */
  persist?: boolean
}

/** A `Storage` in IndexedDB, plus the browser's answer to the persistence request. */
export interface IndexedDbStorage extends Storage {
  /** Resolves to the answer of `navigator.storage.persist()`: undefined when `persist` was not set or the browser lacks the API. */
  readonly persisted: Promise<boolean | undefined>
}

interface StoredSnapshot {
  position: number
  schemaHash: string
  bytes: Blob | Uint8Array
  sum?: string
  /** Older versions' CRC-32, in place of `sum`. */
  crc?: number
}

type Release = () => void | Promise<unknown>

const OBJECT_STORE = 'tidelog'
const pad = (n: number) => String(n).padStart(15, '0')
const key = (storeId: string, kind: 'j' | 's', pos: number) => `${storeId}/${kind}/${pad(pos)}`
// '/' cannot occur in a storeId, so no storeId's range overlaps another's
const range = (storeId: string, kind: 'j' | 's', from = 0, to?: number) =>
  IDBKeyRange.bound(key(storeId, kind, from), to === undefined ? `${storeId}/${kind}/\uffff` : key(storeId, kind, to))

/** Whether a stored snapshot's bytes match its checksum: `sum`, or an older version's `crc`. */
const intact = (stored: StoredSnapshot, bytes: Uint8Array) =>
  typeof stored.sum === 'string' ? checksum64(bytes) === stored.sum : typeof stored.crc === 'number' && crc32(bytes) === stored.crc

/**
 * A write IndexedDB refused, as a StorageError that says why: browsers abort with a DOMException whose
 * message is often empty (QuotaExceededError has none in Chromium), so its name is what tells.
 */
function writeFailed(where: string, what: string, error: unknown): StorageError {
  const e = error as DOMException | undefined
  const why =
    e?.name === 'QuotaExceededError'
      ? "the browser's storage for this site is full (QuotaExceededError: a full disk, or the site's share used up). Free disk space or site data"
      : `${e?.name ?? 'Error'}${e?.message ? `: ${e.message}` : ''}`
  return new StorageError(`Could not ${what} ${where}: ${why}. Nothing of it was written.`, { cause: error })
}

// Locks held in this JS realm when Web Locks are missing (Node, old browsers): name -> waiters, present while held
const localLocks = new Map<string, (() => void)[]>()

function lockLocally(name: string, wait: boolean): Promise<Release | undefined> {
  const release = () => {
    const next = localLocks.get(name)?.shift()
    if (next)
      next() // hand the lock straight to the next waiter
    else localLocks.delete(name)
  }
  const waiters = localLocks.get(name)
  if (!waiters) localLocks.set(name, [])
  else if (!wait) return Promise.resolve(undefined)
  else return new Promise((resolve) => waiters.push(() => resolve(release)))
  return Promise.resolve(release)
}

function lockAcrossTabs(locks: LockManager, name: string, wait: boolean): Promise<Release | undefined> {
  return new Promise((resolve, reject) => {
    let release!: () => void
    const held = new Promise<void>((r) => (release = r))
    // the lock is held until the callback's promise settles, i.e. until close()
    const done = locks.request(name, wait ? {} : { ifAvailable: true }, (lock) => {
      if (!lock) return resolve(undefined)
      resolve(() => {
        release()
        return done
      })
      return held
    })
    done.catch(reject)
  })
}

/**
 * Browser persistence in IndexedDB through idb-keyval, with strict-durability
 * writes, checksummed snapshots and a Web Locks lock per storeId; falls back to
 * memory (with a warning) where IndexedDB cannot be opened, as in some private modes.
 * @example createStore({ schema, storeId: 'todos', storage: indexedDbStorage({ name: 'my-app', persist: true }) })
 */
export function indexedDbStorage(options: IndexedDbStorageOptions): IndexedDbStorage {
  const useStore = strictStore(options.name, OBJECT_STORE).use
  const nav = typeof navigator === 'undefined' ? undefined : navigator
  const persisted = options.persist && nav?.storage?.persist ? nav.storage.persist().catch(() => undefined) : Promise.resolve(undefined)
  let usable: Promise<boolean> | undefined
  let fallback: Storage | undefined

  /**
   * What loadLog (src/storage-policy.ts: which snapshot, the gap rule, the notes) reads of one storeId.
   * Without `repairs`, it reads only the snapshots and repairs nothing: a tab without the lock peeks.
   */
  const reader = (storeId: string, repairs: boolean): LogReader => {
    let read: JournalRecord[] = []
    return {
      where: `indexeddb:${options.name}/${storeId}`,
      fix: `Delete the database "${options.name}" (or this storeId's keys) to start empty.`,
      snapshotName: (position) => `snapshot ${key(storeId, 's', position)}`,
      async snapshotPositions() {
        const keys = (await useStore('readonly', (s) => promisifyRequest(s.getAllKeys(range(storeId, 's'))))) as string[]
        return keys.map((k) => Number(k.slice(-15)))
      },
      async readSnapshot(position) {
        const stored = await get<StoredSnapshot>(key(storeId, 's', position), useStore)
        if (!stored || stored.position !== position) return undefined
        const bytes = ArrayBuffer.isView(stored.bytes)
          ? stored.bytes
          : stored.bytes instanceof Blob
            ? await stored.bytes.arrayBuffer().then(
                (b) => new Uint8Array(b),
                () => undefined,
              )
            : undefined
        return bytes && intact(stored, bytes) ? { position, schemaHash: stored.schemaHash, bytes } : undefined
      },
      async readJournal(from) {
        if (!repairs) return { records: [], dropped: [] }
        read = (await useStore('readonly', (s) => promisifyRequest(s.getAll(range(storeId, 'j', from + 1))))) as JournalRecord[]
        return { records: read, dropped: [] }
      },
      async repair(damaged, cutAt) {
        if (!repairs) return damaged.map(() => 'left to the tab that holds the lock')
        await useStore('readwrite', (s) => {
          for (const position of damaged) s.delete(key(storeId, 's', position))
          if (cutAt !== undefined) s.delete(range(storeId, 'j', read[cutAt]!.pos))
          return promisifyRequest(s.transaction)
        })
        return damaged.map(() => 'deleted')
      },
    }
  }
  const broadcast = typeof BroadcastChannel === 'undefined' ? undefined : broadcastTabLinks(options.name)
  // a tab that finds the lock held boots from the newest intact snapshot (PROTOCOL.md, Tabs): IndexedDB reads need no lock
  const links: TabLinks | undefined = broadcast && {
    ...broadcast,
    async peek(storeId) {
      if (fallback || !(await usable)) return undefined
      return (await loadLog(reader(storeId, false))).snapshot
    },
  }

  // storeId, closed handles and a dense journal: src/storage-policy.ts
  return withStoragePolicy({
    name: `indexeddb:${options.name}`,
    persisted,
    // a second tab finds the lock held and becomes a client of the tab that holds it (PROTOCOL.md, Tabs);
    // on the memory fallback every tab is on its own
    get tabs() {
      return fallback ? undefined : links
    },
    async open(storeId: string, openOptions?: StorageOpenOptions): Promise<StorageHandle> {
      usable ??= (async () => {
        try {
          await useStore('readonly', () => undefined)
          return true
        } catch (e) {
          console.warn(
            `tidelog: IndexedDB "${options.name}" cannot be opened (${(e as Error)?.message ?? e}), as in some private browsing modes. Using memory storage instead: data will not survive a reload.`,
          )
          return false
        }
      })()
      if (!(await usable)) {
        fallback ??= memoryStorage()
        return fallback.open(storeId, openOptions)
      }

      const where = `indexeddb:${options.name}/${storeId}`
      const lockName = `tidelog:${options.name}:${storeId}`
      const wait = openOptions?.waitForLock ?? false
      const unlock = await (nav?.locks ? lockAcrossTabs(nav.locks, lockName, wait) : lockLocally(lockName, wait))
      if (!unlock) throw new StorageLockedError(where)

      let queue: Promise<unknown> = Promise.resolve()
      const run = <T>(fn: () => Promise<T>): Promise<T> => {
        const result = queue.then(fn)
        queue = result.catch(() => undefined)
        return result
      }

      const load = (): Promise<LoadedLog> => loadLog(reader(storeId, true))

      async function append(records: JournalRecord[]): Promise<void> {
        await setMany(
          records.map((r) => [key(storeId, 'j', r.pos), r]),
          useStore,
        ).catch((e) => {
          throw writeFailed(where, 'append to', e)
        })
      }

      async function saveSnapshot(snapshot: Snapshot): Promise<void> {
        const { bytes } = snapshot
        const stored: StoredSnapshot = {
          position: snapshot.position,
          schemaHash: snapshot.schemaHash,
          bytes: new Blob([bytes as Uint8Array<ArrayBuffer>]),
          sum: checksum64(bytes),
        }
        await useStore('readwrite', (s) => {
          s.put(stored, key(storeId, 's', snapshot.position))
          const request = s.getAllKeys(range(storeId, 's'))
          // one transaction: the new snapshot, pruning and journal compaction land together or not at all
          request.onsuccess = () => {
            const keys = request.result as string[]
            for (const k of keys.slice(0, -2)) s.delete(k)
            const older = keys.length >= 2 ? Number(keys[keys.length - 2]!.slice(-15)) : 0
            if (older > 0) s.delete(range(storeId, 'j', 0, older))
          }
          return promisifyRequest(s.transaction)
        }).catch((e) => {
          throw writeFailed(where, 'save a snapshot to', e)
        })
      }

      return {
        load: () => run(load),
        append: (records) => run(() => append(records)),
        saveSnapshot: (snapshot) => run(() => saveSnapshot(snapshot)),
        async close(): Promise<void> {
          await queue
          await unlock()
        },
      }
    },
  })
}
