import { effect, type ReadonlySignal } from '@preact/signals-core'
import type { ConfirmedEvent, Store, SyncBackend } from 'tidelog'

/**
 * Resolves with the signal's value once `pred` holds (checked on every change,
 * through an effect, so nothing polls). The timeout is only a safety net that
 * turns a hang into a readable failure; no test asserts on time.
 */
export function waitFor<T>(sig: ReadonlySignal<T>, pred: (value: T) => boolean, what = 'a condition', timeoutMs = 10_000): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let settled = false
    let dispose: (() => void) | undefined
    const finish = () => {
      settled = true
      clearTimeout(timer)
      // an effect cannot dispose itself while running its first pass synchronously
      queueMicrotask(() => dispose?.())
    }
    const timer = setTimeout(() => {
      if (settled) return
      finish()
      reject(new Error(`timed out waiting for ${what}; last value: ${JSON.stringify(sig.peek())}`))
    }, timeoutMs)
    dispose = effect(() => {
      const value = sig.value
      if (!settled && pred(value)) {
        finish()
        resolve(value)
      }
    })
  })
}

/** Rejects with a readable message when `promise` does not settle in time (a hang guard, not a timing assertion). */
export function within<T>(promise: Promise<T>, what: string, timeoutMs = 10_000): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined
  const guard = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), timeoutMs)
  })
  return Promise.race([promise, guard]).finally(() => clearTimeout(timer))
}

/**
 * A condition to wait for that no signal announces: `changed()` says something moved, and
 * `until(pred)` resolves at the first change (or at once) after which `pred` holds.
 */
export function onChange(): { changed(): void; until(pred: () => boolean, what: string, timeoutMs?: number): Promise<void> } {
  let check = () => {}
  return {
    changed: () => check(),
    until: (pred, what, timeoutMs = 15_000) =>
      within(
        new Promise<void>((resolve) => {
          check = () => {
            if (pred()) resolve()
          }
          check()
        }),
        what,
        timeoutMs,
      ),
  }
}

/** Lets the event loop turn once (timers, I/O, unhandled-rejection checks), without waiting on a clock. */
export const turn = () => new Promise<void>((resolve) => setImmediate(resolve))

/** The backend's whole log of a storeId. */
export async function backendLog(backend: SyncBackend, storeId: string): Promise<ConfirmedEvent[]> {
  const out: ConfirmedEvent[] = []
  for (;;) {
    const page = await backend.pull(storeId, out.length, 1000)
    out.push(...page.events)
    if (!page.more || page.events.length === 0) return out
  }
}

/** Waits until every store holds the backend's whole log, with nothing pending. */
export async function converged(backend: SyncBackend, storeId: string, ...stores: Store<any>[]): Promise<ConfirmedEvent[]> {
  await Promise.all(stores.map((s) => within(s.sync.flush(), `flush of ${s.clientId}`)))
  const log = await backendLog(backend, storeId)
  await Promise.all(
    stores.map((s) =>
      waitFor(s.sync.status, (st) => st.state === 'synced' && st.pending === 0 && st.head === log.length, `${s.clientId} to reach head ${log.length}`),
    ),
  )
  return log
}

/** `store.events()` reduced to what must be equal across clients. */
export const logOf = (events: readonly { seq: number | null; id: string; name: string; args: unknown }[]) =>
  events.map(({ seq, id, name, args }) => ({ seq, id, name, args }))
