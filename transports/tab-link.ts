/**
 * The tab link over a BroadcastChannel (PROTOCOL.md, Tabs): the tab that holds
 * a storage's lock answers the other tabs' `pull`/`push` from its own view, in
 * the message shapes of the BroadcastChannel mapping (see broadcast-channel-client.ts),
 * and the other tabs reach it with the BroadcastChannel client. A storage
 * adapter hands these links to the core as `Storage.tabs`; the logic of both
 * ends lives in src/tabs.ts.
 *
 * Invariants:
 *  L1. Live `events` go to each streaming tab from its own cursor, in seq order,
 *      the page that reaches the head carrying the owner's pending list; changes
 *      made in one task are sent once, at the end of it.
 *  L2. `queued` is sent only once the events are durable, and after every view
 *      change made before it was sent (T2).
 */
import { randomId } from '../src/ids.js'
import { errorMessage, MAX_PULL_LIMIT, ProtocolViolation, parseClientMessage } from '../src/protocol.js'
import type { TabLinks, TabOwner } from '../src/storage.js'
import { broadcastChannelClient } from './broadcast-channel-client.js'
import { type HostSends, type OwnerExtras, routed } from './broadcast-channel-messages.js'

/** Timing of the link's client end (see broadcast-channel-client.ts). */
export interface TabLinkOptions {
  requestTimeoutMs?: number
  /** How often a tab checks that the owner is there; the owner forgets a tab silent for four of these. Default 15 000 ms. */
  heartbeatMs?: number
}

/**
 * The tab links of one storage, on channels named after it and the storeId:
 * `indexedDbStorage` uses them by itself; a storage of your own whose lock
 * spans tabs (Web Locks) offers them as its `tabs`.
 * @example const storage: Storage = { ...myWebLockedStorage, tabs: broadcastTabLinks('my-app') }
 */
export function broadcastTabLinks(name: string, options: TabLinkOptions = {}): TabLinks {
  const channelOf = (storeId: string) => `tidelog-tabs:${name}:${storeId}`
  return {
    connect: (storeId, onOwner) => broadcastChannelClient({ channel: channelOf(storeId), ...options, onOwner }),
    serve: (storeId, owner, info) => serveTabs(channelOf(storeId), storeId, owner, 4 * (options.heartbeatMs ?? 15_000), info?.upstream ?? true),
  }
}

function serveTabs(channel: string, storeId: string, owner: TabOwner, ttlMs: number, upstream: boolean): { close(): Promise<void> } {
  const hostId = randomId()
  // owners follow each other in time, so a later one has a higher epoch (B1 of broadcast-channel-client.ts)
  const epoch = Date.now()
  const bc = new BroadcastChannel(channel)
  // a tab that is reloaded or killed says no bye: it is forgotten once silent for ttlMs
  const tabs = new Map<string, { cursor: number; streaming: boolean; seen: number }>()
  let live = true
  let scheduled = false
  // said with every view (the owner's pending list): an owner without a transport is not merely offline
  const extras: OwnerExtras = upstream ? {} : { ownerUpstream: false }

  const send = (to: string, msg: HostSends) => {
    if (live) bc.postMessage({ ...msg, from: hostId, to, epoch })
  }
  const tabOf = (id: string) => {
    let t = tabs.get(id)
    if (!t) {
      t = { cursor: 0, streaming: false, seen: 0 }
      tabs.set(id, t)
    }
    t.seen = Date.now()
    return t
  }

  // L1
  const flush = () => {
    scheduled = false
    const now = Date.now()
    for (const [id, t] of tabs) {
      if (now - t.seen > ttlMs) tabs.delete(id)
      if (!t.streaming || !tabs.has(id)) continue
      for (;;) {
        const page = owner.pull(t.cursor, MAX_PULL_LIMIT)
        send(id, {
          v: 1,
          type: 'events',
          storeId,
          events: page.events,
          head: page.head,
          ...(page.pending ? { pending: page.pending, ownerState: page.ownerState, backendId: page.backendId, ...extras } : {}),
        })
        if (page.events.length) t.cursor = page.events[page.events.length - 1]!.seq
        if (!page.more || !page.events.length) break
      }
    }
  }
  const unsubscribe = owner.subscribe(() => {
    if (scheduled || !live) return
    scheduled = true
    queueMicrotask(() => {
      if (scheduled && live) flush()
    })
  })

  /** A request from another tab, as it came: checked by parseClientMessage. */
  const answer = async (raw: object, from: string) => {
    const given = (raw as { rid?: unknown }).rid
    const rid = typeof given === 'string' || typeof given === 'number' ? given : undefined
    try {
      const msg = parseClientMessage(raw)
      if (msg.storeId !== storeId) throw new ProtocolViolation('unknown_store', `this tab serves storeId "${storeId}", not "${msg.storeId}"`)
      const tab = tabOf(from)
      if (msg.type === 'push') {
        await owner.push(msg.parentSeq, msg.events)
        if (scheduled) flush() // L2
        return send(from, { v: 1, rid, type: 'queued' })
      }
      const page = owner.pull(msg.since, msg.limit ?? MAX_PULL_LIMIT)
      if (!page.more) {
        // cursor and answer in one synchronous step: no flush can slip a change in between
        tab.streaming = true
        tab.cursor = page.events.length ? page.events[page.events.length - 1]!.seq : msg.since
      }
      send(from, { v: 1, rid, ...page, ...(page.pending ? extras : {}) })
    } catch (error) {
      if (error instanceof ProtocolViolation) send(from, errorMessage(error.code, error.message, rid))
      else send(from, errorMessage('internal', `the tab that owns the storage failed: ${(error as Error)?.message ?? error}. Retrying.`, rid))
    }
  }

  bc.onmessage = (event: MessageEvent) => {
    const m = routed(event.data)
    if (!live || m === undefined || m.from === hostId) return
    if (m.to !== hostId && !(m.to === '*' && m.type === 'ping')) return
    if (m.type === 'ping') {
      const t = tabs.get(m.from)
      if (t) t.seen = Date.now()
      send(m.from, { v: 1, type: 'host', streaming: t?.streaming ?? false })
    } else if (m.type === 'bye') tabs.delete(m.from)
    else void answer(m, m.from)
  }
  send('*', { v: 1, type: 'host' })

  return {
    async close() {
      if (!live) return
      send('*', { v: 1, type: 'bye' })
      live = false
      unsubscribe()
      bc.close()
    },
  }
}
