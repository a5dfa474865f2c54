import { TransportError } from './errors.js'
import type { ConfirmedEvent, PendingEvent, PullRequest, PullResponse, PushRequest, PushResponse, QueuedResponse, SyncState } from './protocol.js'

/** What a transport tells the sync engine about its connection. */
export interface TransportStatus {
  state: 'connecting' | 'online' | 'offline'
  error?: Error
}

/** What a storage owner tab's live notification carries besides the events: its pending list, sync state and backendId. */
export interface OwnerNotice {
  pending: PendingEvent[]
  state?: SyncState
  /** '' while the owner has not heard from the backend. */
  backendId?: string
}

/** Callbacks the sync engine hands to `Transport.connect`. */
export interface TransportHandlers {
  /** The log this store syncs; transports that open a connection per store (WebSocket) put it in the URL. */
  storeId: string
  /**
   * Live notification: events past the last page this connection was sent, in seq order.
   * From a storage owner tab, `owner` is the rest of its view (PROTOCOL.md, Tabs).
   */
  onEvents(events: ConfirmedEvent[], head: number, owner?: OwnerNotice): void
  /** Connection changes; after `online` the engine pulls from its confirmed head, which restarts the live stream. */
  onStatus(status: TransportStatus): void
}

/**
 * Moves protocol messages between a store and a sync backend. A transport holds
 * no sync logic: the core pulls, pushes and rebases. `pull`/`push` reject with
 * a `TransportError` when the answer cannot be had (offline, timeout, protocol
 * error); the engine retries with backoff.
 */
export interface Transport {
  /** Starts connecting (and reconnecting by itself); resolves once the first attempt settled. */
  connect(handlers: TransportHandlers): Promise<void>
  pull(request: PullRequest): Promise<PullResponse>
  /** `queued` comes only from a storage owner tab (PROTOCOL.md, Tabs). */
  push(request: PushRequest): Promise<PushResponse | QueuedResponse>
  /** Stops reconnecting and releases the connection; pending requests reject. */
  close(): Promise<void>
}

/**
 * Stores logs and enforces one total order per storeId (PROTOCOL.md, "Rules
 * the backend keeps" and "Backend contract"; `runBackendConformance` checks
 * all of it). Protocol errors are thrown as `ProtocolViolation(code, message)`
 * (from `tidelog/server`) and answered with that code; any other error is
 * answered `internal` and retried by the client.
 */
export interface SyncBackend {
  /**
   * Events with `seq > since` in seq order: at most `min(limit, MAX_PULL_LIMIT)`,
   * whole events, `head` from the same snapshot, `more` = `since + events.length < head`.
   */
  pull(storeId: string, since: number, limit: number): Promise<PullResponse>
  /**
   * Appends a batch atomically. Judged in this order (`judgePush` does it): no
   * events or an id twice → throw `invalid_message`; a `backendId` that is not
   * this log's → `rejected`; all ids already stored right
   * after `parentSeq` (with `anyHead`: anywhere after it) → `pushed` with that
   * firstSeq (a retry); `parentSeq` not the head (with `anyHead`: above the
   * head, or below it with a stored id) → `rejected` (data, not an exception);
   * a stored id among new ones → throw `invalid_message`; else append at the
   * head. Answers `pushed` only once the batch is durable.
   */
  push(storeId: string, request: Omit<PushRequest, 'storeId'>): Promise<PushResponse>
  /**
   * Calls `onHead` when the head of storeId moves, only with heads whose events
   * are durable and pullable, never lower than one told before (heads may be
   * skipped or repeated). Returns an unsubscribe.
   */
  subscribe(storeId: string, onHead: (head: number) => void): () => void
  /** Releases what the backend holds; calls after it reject. */
  close(): Promise<void>
}

/**
 * The lifecycle rules every transport keeps, with their messages, written once (`name`: e.g.
 * `websocketTransport`): a closed transport stays closed, one transport serves one store, and a
 * request that cannot be sent says why.
 */
export function transportRules(name: string) {
  return {
    /** For `connect()`: throws when the transport was closed or is already connected. */
    checkConnect(closed: boolean, connected: boolean): void {
      if (closed) throw new TransportError(`${name} is closed; create a new transport.`, { retryable: false })
      if (connected) throw new TransportError(`${name} is already connected; one transport serves one store.`, { retryable: false })
    },
    /** What a request rejects with when it cannot be sent: for good once closed, else until the transport is connected again. */
    cannotSend(closed: boolean): TransportError {
      return closed
        ? new TransportError(`${name} is closed; create a new transport.`, { retryable: false })
        : new TransportError(`${name} is not connected yet; it reconnects by itself, retry after status online.`)
    },
    /** What the requests in flight reject with when the transport closes. */
    closed(): TransportError {
      return new TransportError(`${name} was closed; the request was not answered.`, { retryable: false })
    },
  }
}
