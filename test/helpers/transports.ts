import type { ConfirmedEvent, PullRequest, PullResponse, PushRequest, SyncBackend, Transport, TransportHandlers } from 'tidelog'

/** One call a wrapped transport saw, with its outcome. */
export type TransportCall =
  | { op: 'pull'; since: number; head: number; count: number }
  | { op: 'push'; parentSeq: number; ids: string[]; result: 'pushed' | 'rejected' | 'queued' | 'threw'; firstSeq?: number }

export interface TransportHooks {
  connect?(handlers: TransportHandlers, inner: Transport): Promise<void>
  pull?(request: PullRequest, inner: Transport): Promise<PullResponse>
  push?(request: PushRequest, inner: Transport): ReturnType<Transport['push']>
  /** Sees every live notification; call `deliver` to pass it on (or don't, to lose it). */
  onEvents?(events: ConfirmedEvent[], head: number, deliver: (events: ConfirmedEvent[], head: number) => void): void
}

/** A transport that forwards to `inner`, records every pull and push, and lets a test interfere. */
export function wrapTransport(inner: Transport, hooks: TransportHooks = {}): Transport & { calls: TransportCall[] } {
  const calls: TransportCall[] = []
  return {
    calls,
    connect(handlers) {
      const wrapped: TransportHandlers = {
        ...handlers,
        onEvents: (events, head, owner) => (hooks.onEvents ? hooks.onEvents(events, head, handlers.onEvents) : handlers.onEvents(events, head, owner)),
      }
      return hooks.connect ? hooks.connect(wrapped, inner) : inner.connect(wrapped)
    },
    async pull(request) {
      const res = await (hooks.pull ? hooks.pull(request, inner) : inner.pull(request))
      calls.push({ op: 'pull', since: request.since, head: res.head, count: res.events.length })
      return res
    },
    async push(request) {
      const entry: TransportCall = { op: 'push', parentSeq: request.parentSeq, ids: request.events.map((e) => e.id), result: 'threw' }
      calls.push(entry)
      const res = await (hooks.push ? hooks.push(request, inner) : inner.push(request))
      entry.result = res.type
      if (res.type === 'pushed') entry.firstSeq = res.firstSeq
      return res
    },
    close: () => inner.close(),
  }
}

/** A backend that forwards to whichever backend `current` holds, to replace a backend under live clients. */
export function swappableBackend(initial: SyncBackend): SyncBackend & { current: SyncBackend } {
  const b = {
    current: initial,
    pull: (storeId: string, since: number, limit: number) => b.current.pull(storeId, since, limit),
    push: (storeId: string, request: Omit<PushRequest, 'storeId'>) => b.current.push(storeId, request),
    subscribe: (storeId: string, onHead: (head: number) => void) => b.current.subscribe(storeId, onHead),
    close: () => b.current.close(),
  }
  return b
}

/** A promise with its resolve function, for gating a wrapped call. */
export interface Deferred<T = void> {
  promise: Promise<T>
  resolve(value: T): void
}

export function deferred<T = void>(): Deferred<T> {
  let resolve!: (value: T) => void
  const promise = new Promise<T>((r) => (resolve = r))
  return { promise, resolve }
}
