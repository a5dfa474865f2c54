import type { EventLog, LogChange } from './eventlog.js'
import { counterOf } from './ids.js'
import type { ConfirmedEvent, JsonValue, PendingEvent } from './protocol.js'
import { toPending } from './protocol.js'
import type { EventValue } from './schema.js'
import type { PushGate } from './store-push-gate.js'
import type { StoreOptions } from './store-types.js'
import type { SyncHost } from './sync-engine.js'

/** What the sync host needs from the store that owns the storage (or has none to share). */
export interface StoreSyncHostContext {
  storeId: string
  clientId: string
  log(): EventLog
  backendId(): string | undefined
  setBackendId(id: string): void
  /** This client's event counter reached `n` (own events that came back). */
  raiseCounter(n: number): void
  /** A new pending event of this client, for `onConflict`'s new event values. */
  makePending(value: EventValue<unknown>): PendingEvent
  onConflict: StoreOptions<any>['onConflict']
  gate: PushGate
  /** Signals and sync status after a change of the log. */
  publish(written: Iterable<string>): void
  /** Receipts after a change of the log. */
  settle(change: Pick<LogChange, 'confirmed' | 'dropped'>): void
  setState: SyncHost['setState']
  warn(message: string): void
}

/** The SyncHost a store hands its engine: it pushes only what the gate lets through and journals what comes back. */
export function createStoreSyncHost(ctx: StoreSyncHostContext): SyncHost {
  const { onConflict } = ctx
  const resolveConflict = onConflict
    ? (local: PendingEvent[], upstream: ConfirmedEvent[]): PendingEvent[] =>
        onConflict({ local, upstream }).map((e) =>
          'argsJson' in e
            ? ctx.makePending(e as EventValue<unknown>)
            : { ...toPending(e as PendingEvent), args: JSON.parse(JSON.stringify((e as PendingEvent).args ?? null)) as JsonValue },
        )
    : undefined

  return {
    storeId: ctx.storeId,
    head: () => ctx.log().head,
    backendId: ctx.backendId,
    pendingCount: ctx.gate.pushableCount,
    pendingBatch: ctx.gate.pushable,
    applyUpstream(events, id) {
      // own events can come back that this client no longer remembers (a journal tail lost to damage)
      for (const e of events) if (e.clientId === ctx.clientId) ctx.raiseCounter(counterOf(e.id))
      const change = ctx.log().applyUpstream(events, resolveConflict)
      ctx.setBackendId(id)
      void ctx.gate.record({ t: 'upstream', events, backendId: id, ...(change.pendingAfter ? { pending: change.pendingAfter } : {}) })
      ctx.publish(change.written)
      ctx.settle(change)
    },
    confirm(firstSeq, ids, id) {
      const confirmed = ctx.log().confirm(firstSeq, ids)
      ctx.setBackendId(id)
      if (!confirmed) return
      void ctx.gate.record({ t: 'confirm', firstSeq, count: ids.length, backendId: id })
      ctx.publish([])
      ctx.settle({ confirmed, dropped: new Map() })
    },
    anyHead: () => !onConflict,
    setState: ctx.setState,
    warn: ctx.warn,
  }
}
