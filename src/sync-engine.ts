/**
 * The client side of the sync protocol (PROTOCOL.md, rules the client keeps),
 * transport-agnostic. The engine owns no state of its own: the log lives in
 * the store; the engine only decides when to pull and push.
 *
 *     backend:  1 ........................ backend head
 *     client:   1 ........ confirmed head | pending ->  (pushed with parentSeq = confirmed head)
 *
 * Invariants:
 *  S1. Pull before push; a push carries parentSeq = confirmed head (rule 1).
 *  S2. `rejected` is data: pull again and push right after applying it,
 *      without backoff; after two losses in a row (and with no merge hook) the
 *      pushes ask for `anyHead` until nothing is pending, so a client racing a
 *      busy log gets in (rule 4). A push names the backendId its head is from.
 *  S3. Incoming events are applied only at head + 1; a gap triggers a pull (rule 3).
 *  S4. Failures back off exponentially with full jitter, 250 ms to 30 s (rule 4).
 *  S5. A changed backendId stops sync with BackendResetError (backend rule 4).
 *  S6. A backend whose head is behind the confirmed head under the same
 *      backendId lost acknowledged events: sync shows `error` and retries
 *      slowly, never pushing onto the shorter log.
 *  S7. Upstream may be a storage owner tab (PROTOCOL.md, Tabs): its pulls and
 *      live events carry its pending list, applied with the events as one
 *      rebase, and it answers pushes with `queued` (durable there, not ordered).
 *  S8. A refused token (a TransportError with code `unauthorized`) shows as
 *      state `error` on every transport until the transport is online again.
 */
import { backoffDelay } from './backoff.js'
import { BackendResetError, TransportError } from './errors.js'
import {
  type ConfirmedEvent,
  MAX_PULL_LIMIT,
  type PendingEvent,
  type PullResponse,
  type PushRequest,
  type PushResponse,
  type QueuedResponse,
  type SyncState,
} from './protocol.js'
import type { Transport, TransportStatus } from './transport.js'

/** A storage owner tab's view after its confirmed head (S7). */
export interface OwnerView {
  pending: PendingEvent[]
  head: number
  state?: SyncState
}

/** What the engine needs from the store. */
export interface SyncHost {
  readonly storeId: string
  head(): number
  backendId(): string | undefined
  pendingCount(): number
  pendingBatch(limit: number): PendingEvent[]
  /**
   * Applies events that start exactly at head + 1 (rebasing pending ones). With
   * `upstream`, the owner tab's pending list after its head goes before this
   * store's own pending events (S7).
   */
  applyUpstream(events: ConfirmedEvent[], backendId: string, upstream?: OwnerView): void
  /** An owner tab answered `queued`: these events are durable in its storage (S7). */
  acknowledge?(ids: string[]): void
  /** A push of `ids` was accepted at firstSeq. */
  confirm(firstSeq: number, ids: string[], backendId: string): void
  setState(state: SyncState, error?: Error): void
  /** Something the app should know of that is no error (the store's `onWarning`). */
  warn?(message: string): void
  /**
   * True when pushes may ask for `anyHead`: no merge hook needs to see every
   * upstream event before this client's pending ones are placed after it.
   */
  anyHead(): boolean
}

export interface SyncEngineOptions {
  /** Most events per push. */
  batchSize?: number
  minBackoffMs?: number
  maxBackoffMs?: number
}

/** Pushes lost in a row, for at least this long, after which the app is told (onWarning) why nothing gets in. */
const STARVING_LOSSES = 20
const STARVING_MS = 3000

const starvingWarning = (losses: number, ms: number, anyHead: boolean) =>
  `${losses} pushes in a row (${(ms / 1000).toFixed(1)} s) lost the race: other clients commit faster than this one can pull, rebase and push.${anyHead ? '' : ' With onConflict it pushes at the head only (the hook sees every upstream event first), so it waits for the head to hold still.'} It keeps trying.`

/** What the store drives: started once, poked when there is something to push, closed with the store. */
export interface SyncEngine {
  /** Connects the transport and runs the sync loop until close(). */
  start(): void
  /** Something to push (a commit) or to re-check. */
  poke(): void
  /** Go offline on purpose (`sync.pause()`). */
  pause(): void
  resume(): void
  /** After a backend reset was resolved: sync again from head 0. */
  unblock(): void
  /** Stops the loop and closes the transport. */
  close(): Promise<void>
}

/** The store makes one per upstream: its transport, or the link to the tab that owns the storage. */
export function createSyncEngine(transport: Transport, host: SyncHost, options: SyncEngineOptions = {}): SyncEngine {
  const batchSize = options.batchSize ?? 500
  let closed = false
  let paused = false
  let online = false
  let blocked: Error | undefined // BackendResetError: wait for resetToBackend
  let refused: Error | undefined // the transport's last word while offline was a refused token (S8)
  let dirty = true
  let wakeUp: (() => void) | undefined
  let onlineWaiter: (() => void) | undefined
  let backendId: string | undefined

  const poke = () => {
    dirty = true
    wakeUp?.()
  }
  const nextWake = (): Promise<void> => {
    if (dirty) {
      dirty = false
      return Promise.resolve()
    }
    return new Promise<void>((r) => {
      wakeUp = () => {
        wakeUp = undefined
        dirty = false
        r()
      }
    })
  }

  const behind = (head: number, confirmed: number) =>
    new TransportError(
      `The sync backend's log of "${host.storeId}" ends at seq ${head}, before this client's confirmed head ${confirmed}, under the same backendId: it lost events it had acknowledged. Its operator must restore the log (\`tidelog check\` names damaged stores); this client keeps its events and retries every ${Math.round((options.maxBackoffMs ?? 30_000) / 1000)} s.`,
      { retryable: false, protocolCode: 'backend_behind' },
    )

  const checkBackend = (id: string) => {
    const known = host.backendId()
    // '' is an owner tab that has not heard from the backend yet (PROTOCOL.md, Tabs): no verdict
    if (known !== undefined && id !== '' && known !== id) throw new BackendResetError(known, id)
    backendId = id
  }

  type Upstream = OwnerView | undefined
  const apply = (events: ConfirmedEvent[], id: string, upstream?: Upstream) => {
    const head = host.head()
    const fresh = events.filter((e) => e.seq > head)
    if (!fresh.length) {
      if (upstream) host.applyUpstream([], id, upstream)
      return true
    }
    if (fresh[0]!.seq !== head + 1) return false // S3
    for (let i = 1; i < fresh.length; i++) if (fresh[i]!.seq !== fresh[i - 1]!.seq + 1) return false
    host.applyUpstream(fresh, id, upstream)
    return true
  }
  const upstreamOf = (page: PullResponse): Upstream =>
    page.pending && !page.more ? { pending: page.pending, head: page.head, state: page.ownerState } : undefined

  /**
   * Pulls to the backend head. Pages are applied as they come while nothing is
   * pending; with pending events the pages are kept and returned, so that the
   * caller applies them in one rebase (see run()).
   */
  const pullToHead = async (): Promise<{ events: ConfirmedEvent[]; backendId: string; upstream: Upstream }> => {
    const held: ConfirmedEvent[] = []
    // each page with the `since` it was asked from: what the backend must hold at least (S6)
    const pull = (since: number) => transport.pull({ storeId: host.storeId, since, limit: MAX_PULL_LIMIT }).then((page) => ({ page, since }))
    let next: Promise<{ page: PullResponse; since: number }> | undefined = pull(host.head())
    let page: PullResponse
    do {
      const answer: { page: PullResponse; since: number } = await next
      page = answer.page
      next = undefined
      // the next page is asked for before this one is applied, so that the backend and the network work
      // meanwhile (a client catching up waits one round trip per page otherwise); dropped if this page fails
      if (page.more && page.events.length && !closed) {
        // where this page leaves the head (applied) or the held events, if it is what it should be
        next = pull(Math.max(host.head(), held.length ? held[held.length - 1]!.seq : 0, page.events[page.events.length - 1]!.seq))
        next.catch(() => {})
      }
      checkBackend(page.backendId)
      // S6, against the head this page was asked from: live events may have moved the head past it while
      // the answer travelled (a storage owner tab's pages carry its pending list and may lag a moment)
      if (page.head < answer.since && page.pending === undefined) throw behind(page.head, answer.since)
      const fresh = page.events.filter((e) => e.seq > host.head())
      if (held.length === 0 && host.pendingCount() === 0) {
        if (!apply(fresh, page.backendId, upstreamOf(page)))
          throw new TransportError('pull answered a page that does not start at head + 1', { retryable: true })
        if (upstreamOf(page)) return { events: [], backendId: page.backendId, upstream: undefined }
      } else {
        for (const e of fresh) {
          const last = held.length ? held[held.length - 1]!.seq : host.head()
          if (e.seq !== last + 1) throw new TransportError('pull answered a page that does not start at head + 1', { retryable: true })
          held.push(e)
        }
      }
    } while (next && !closed)
    return { events: held, backendId: page.backendId, upstream: upstreamOf(page) }
  }

  /** A push on its way: the answer, the ids it carried and the head it was based on. */
  type Pushing = Promise<{ res: PushResponse | QueuedResponse; ids: string[]; parentSeq: number }> | undefined
  /** Pushes the oldest pending events on top of the confirmed head (or, with `anyHead`, of any later head). */
  const push = (anyHead: boolean): Pushing => {
    const batch = host.pendingBatch(batchSize)
    if (!batch.length) return undefined
    const ids = batch.map((e) => e.id)
    const parentSeq = host.head()
    const request: PushRequest = { storeId: host.storeId, parentSeq, events: batch }
    if (backendId !== undefined) request.backendId = backendId // S5: never onto another incarnation of the log
    if (anyHead) request.anyHead = true
    return transport.push(request).then((res) => ({ res, ids, parentSeq }))
  }

  /** Live events while events are pending are applied together a moment later: one rebase for a burst. */
  let buffered: ConfirmedEvent[] = []
  let bufferedUpstream: Upstream // the newest owner pending list: it follows every buffered event
  let drainTimer: ReturnType<typeof setTimeout> | undefined
  const drain = () => {
    drainTimer = undefined
    const events = buffered.sort((a, b) => a.seq - b.seq).filter((e, i, all) => i === 0 || e.seq !== all[i - 1]!.seq)
    const upstream = bufferedUpstream
    buffered = []
    bufferedUpstream = undefined
    if (closed || paused || blocked || backendId === undefined) return
    if (!apply(events, backendId, upstream)) poke()
  }

  let shown: Parameters<SyncHost['setState']>[0] | undefined
  const show: SyncHost['setState'] = (state, error) => {
    shown = state
    host.setState(state, error)
  }

  const run = async () => {
    let attempt = 0
    let losses = 0 // pushes rejected in a row
    let losingSince = 0 // when the first of them was rejected
    let starving = false // said so (starvingWarning)
    let fruitless = false // the last push was rejected on the head it was based on: nothing to pull should explain it
    while (!closed) {
      if (paused || blocked) {
        show(blocked ? 'error' : 'offline', blocked)
        await nextWake()
        continue
      }
      if (!online) {
        show(refused ? 'error' : 'connecting', refused)
        await new Promise<void>((r) => (onlineWaiter = r))
        continue
      }
      try {
        // a re-check with nothing to push keeps showing 'synced' (no flicker on every poke)
        if (shown !== 'synced' || host.pendingCount() > 0) show('syncing')
        const pulled = await pullToHead() // S1
        if (closed || paused) continue
        const upstream = pulled.events
        const changed = upstream.length > 0 || pulled.upstream !== undefined
        if (changed && !apply(upstream, pulled.backendId, pulled.upstream))
          throw new TransportError('pulled events do not start at head + 1', { retryable: true })
        if (fruitless && !changed) {
          // S2 holds only while a rejection means the log moved: a backend that refuses pushes on its own
          // head and backendId would otherwise be asked again and again without a pause
          fruitless = false
          throw new TransportError(
            `The sync backend rejected a push based on its head ${host.head()} and backendId ${backendId}, which its pull reports unchanged: it judges pushes against another log than it serves. Retrying with backoff.`,
            { retryable: true },
          )
        }
        fruitless = false
        // S2: after losing races, the push asks to be appended on whatever head the backend has by
        // then: a client whose round trip is longer than the time between other clients' commits
        // would otherwise never get in. Where it lands past this client's head, confirm() leaves it
        // pending and the events come back with the next pull or live notification.
        const anyHead = losses >= 2 && host.anyHead()
        const pushing = host.pendingCount() > 0 ? push(anyHead) : undefined
        if (pushing) {
          const { res, ids, parentSeq } = await pushing
          // S2: a client that had to ask for anyHead goes on asking until nothing is pending
          if (res.type === 'rejected') {
            if (losses++ === 0) losingSince = Date.now()
            fruitless = res.head === parentSeq
            const ms = Date.now() - losingSince
            if (!starving && losses >= STARVING_LOSSES && ms >= STARVING_MS) {
              starving = true
              host.warn?.(starvingWarning(losses, ms, host.anyHead()))
            }
          } else {
            if (starving) host.warn?.(`Pushes get in again, after ${losses} lost races in ${((Date.now() - losingSince) / 1000).toFixed(1)} s.`)
            starving = false
            if (!anyHead) losses = 0
          }
          if (res.type === 'pushed') {
            checkBackend(res.backendId)
            host.confirm(res.firstSeq, ids, res.backendId)
          } else if (res.type === 'queued') host.acknowledge?.(ids)
          attempt = 0
          // a long losing streak over a transport that answers at once (in process) would never leave the
          // event loop a turn: past STARVING_LOSSES each retry waits for one
          if (losses >= STARVING_LOSSES && res.type === 'rejected') await new Promise((resolve) => setTimeout(resolve, 0))
          continue // S2: pushed -> maybe more to push; rejected -> pull and push again at once
        }
        if (upstream.length || host.pendingCount() > 0) continue
        attempt = 0
        losses = 0
        starving = false
        show('synced')
        await nextWake()
      } catch (error) {
        if (closed) break
        if (error instanceof BackendResetError) {
          blocked = error
          continue
        }
        const err = error instanceof Error ? error : new Error(String(error))
        show(online ? 'error' : 'offline', err)
        // S4: sleep, but come back at once when the transport reconnects; what the server refused for good waits the longest
        const final = err instanceof TransportError && !err.retryable
        await new Promise<void>((r) => {
          const t = setTimeout(r, final ? (options.maxBackoffMs ?? 30_000) : backoffDelay(attempt++, options.minBackoffMs, options.maxBackoffMs))
          onlineWaiter = () => {
            clearTimeout(t)
            r()
          }
        })
      }
    }
  }

  let loop: Promise<void> | undefined

  return {
    start() {
      loop = (async () => {
        await transport
          .connect({
            storeId: host.storeId,
            onEvents(events, head, owner) {
              if (closed || paused || blocked || backendId === undefined) return
              if (owner?.backendId !== undefined) {
                // an owner tab's log can be reset under a live link (S5, S7)
                try {
                  checkBackend(owner.backendId)
                } catch (error) {
                  blocked = error as Error
                  return poke()
                }
              }
              const upstream = owner ? { pending: owner.pending, head, state: owner.state } : undefined
              if (host.pendingCount() === 0 && !drainTimer) {
                if (!apply(events, backendId, upstream)) poke()
                return
              }
              buffered.push(...events)
              if (upstream) bufferedUpstream = upstream
              drainTimer ??= setTimeout(drain, 0)
            },
            onStatus(status: TransportStatus) {
              const was = online
              online = status.state === 'online'
              if (online && !was) {
                dirty = true
                const w = onlineWaiter
                onlineWaiter = undefined
                w?.()
              }
              if (online) refused = undefined
              else if (status.error) refused = (status.error as { code?: unknown }).code === 'unauthorized' ? status.error : undefined
              if (!online && status.error && !paused) show(refused ? 'error' : 'offline', status.error)
              if (!online) poke()
            },
          })
          .catch((error) => show('error', error as Error))
        await run()
      })()
      loop.catch(() => {})
    },
    poke,
    pause() {
      paused = true
      poke()
    },
    resume() {
      paused = false
      poke()
      const w = onlineWaiter
      onlineWaiter = undefined
      w?.()
    },
    unblock() {
      blocked = undefined
      backendId = undefined
      poke()
    },
    async close() {
      closed = true
      clearTimeout(drainTimer)
      poke()
      onlineWaiter?.()
      await transport.close().catch(() => {})
      await loop
    },
  }
}
