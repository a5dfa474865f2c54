import { promisifyRequest, type UseStore } from 'idb-keyval'

/** An idb-keyval store whose write transactions are durable, and a way to let go of its database. */
export interface StrictStore {
  use: UseStore
  /** Closes the database connection; the next `use` opens it again. */
  close(): void
}

/**
 * idb-keyval's `createStore`, except that write transactions ask for strict
 * durability: browsers default to relaxed, which may resolve before the data
 * reaches the disk, and callers here promise the opposite (a storage append,
 * a backend's `pushed`). A database that exists without the object store
 * (made by something else) gets it in a new version.
 */
export function strictStore(dbName: string, objectStore: string): StrictStore {
  let dbp: Promise<IDBDatabase> | undefined
  const openDb = (version?: number): Promise<IDBDatabase> => {
    const request = version === undefined ? indexedDB.open(dbName) : indexedDB.open(dbName, version)
    request.onupgradeneeded = () => {
      if (!request.result.objectStoreNames.contains(objectStore)) request.result.createObjectStore(objectStore)
    }
    request.onblocked = () =>
      console.warn(`tidelog: waiting for other connections to IndexedDB "${dbName}" to close, to add the "${objectStore}" object store.`)
    return promisifyRequest(request).then((db) => {
      if (db.objectStoreNames.contains(objectStore)) return db
      db.close()
      return openDb(db.version + 1)
    })
  }
  const getDb = () => {
    if (dbp) return dbp
    const opened = openDb()
    dbp = opened
    opened.then(
      (db) => {
        db.onclose = () => {
          if (dbp === opened) dbp = undefined
        }
        // let another tab upgrade or delete the database instead of blocking it
        db.onversionchange = () => {
          db.close()
          if (dbp === opened) dbp = undefined
        }
      },
      () => {
        if (dbp === opened) dbp = undefined
      },
    )
    return opened
  }
  return {
    use: (mode, callback) =>
      getDb().then((db) => callback(db.transaction(objectStore, mode, mode === 'readwrite' ? { durability: 'strict' } : {}).objectStore(objectStore))),
    close: () => {
      void dbp?.then(
        (db) => db.close(),
        () => {},
      )
      dbp = undefined
    },
  }
}
