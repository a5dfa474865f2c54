/** Who is told when a storeId's head moves; every backend keeps one. */
export interface HeadListeners {
  /** `SyncBackend.subscribe`: adds `onHead` for storeId; the returned function removes it. */
  subscribe(storeId: string, onHead: (head: number) => void): () => void
  /** Tells storeId's listeners its head is now `head`, in a microtask: never inside the pusher's own call. */
  notify(storeId: string, head: number): void
  clear(): void
}

/** A registry of head listeners per storeId; a storeId with no listener left holds nothing. */
export function createHeadListeners(): HeadListeners {
  const listeners = new Map<string, Set<(head: number) => void>>()
  return {
    subscribe(storeId, onHead) {
      let set = listeners.get(storeId)
      if (!set) {
        set = new Set()
        listeners.set(storeId, set)
      }
      set.add(onHead)
      return () => {
        set.delete(onHead)
        if (set.size === 0 && listeners.get(storeId) === set) listeners.delete(storeId)
      }
    },
    notify(storeId, head) {
      const set = listeners.get(storeId)
      if (!set) return
      queueMicrotask(() => {
        for (const onHead of [...set]) onHead(head)
      })
    },
    clear: () => listeners.clear(),
  }
}
