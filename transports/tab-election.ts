import { indexedDbBackend } from '../src/backends/indexeddb.js'
import type { SyncBackend } from '../src/transport.js'

/** The part of the Web Locks API that `host: 'auto'` uses (`navigator.locks`, or a stand-in in tests). */
export interface LockManagerLike {
  request(name: string, options: { signal?: AbortSignal }, callback: (lock: unknown) => Promise<unknown>): Promise<unknown>
}

/** What `campaignForHost` needs: the channel, Web Locks, and how to serve a log once elected. */
export interface HostCampaign {
  channel: string
  locks: LockManagerLike
  /** Starts answering the channel from `backend`, stamping `epoch`; called only while the lock is held. */
  serve(backend: SyncBackend, epoch: number): { close(): Promise<void> }
  /** Serving failed (IndexedDB unavailable, ...); the lock is released so that another tab can host. */
  onError(error: Error): void
}

/**
 * Waits for the Web Lock `tidelog-host:<channel>`; the tab holding it serves the
 * channel's IndexedDB log under a newly claimed epoch until it resigns (or its
 * tab closes, which releases the lock), and the next tab in line takes over the
 * same log. Returns `resign`, which stops serving or waiting.
 */
export function campaignForHost(campaign: HostCampaign): () => Promise<void> {
  const name = `tidelog-host:${campaign.channel}`
  const abort = new AbortController()
  let resigned = false
  let release!: () => void
  const held = new Promise<void>((resolve) => (release = resolve))
  const done = campaign.locks
    .request(name, { signal: abort.signal }, async () => {
      if (resigned) return
      // a fenced backend means a newer host owns the log: stop serving it
      const backend = indexedDbBackend({ name, onFenced: () => release() })
      try {
        const host = campaign.serve(backend, await backend.claimEpoch())
        await held
        await host.close()
      } finally {
        await backend.close()
      }
    })
    .catch((error: Error) => {
      if (!resigned) campaign.onError(error)
    })
  return async () => {
    resigned = true
    abort.abort()
    release()
    await done
  }
}
