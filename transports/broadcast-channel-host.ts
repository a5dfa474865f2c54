/**
 * The host side of the BroadcastChannel mapping: answers `pull`/`push` from a
 * backend for every client on one channel. Message shapes and invariants B1–B3
 * are described in broadcast-channel.ts.
 */
import { randomId } from '../src/ids.js'
import { errorMessage, MAX_PULL_LIMIT, parseClientMessage, ProtocolViolation, toPending } from '../src/protocol.js'
import type { SyncBackend } from '../src/transport.js'

type Message = Record<string, any>

/** Options of `hostBroadcastChannel`. */
export interface HostBroadcastChannelOptions {
  /** BroadcastChannel name the clients use. */
  channel: string
  backend: SyncBackend
  /** Fencing epoch stamped on every answer; hosts taking over a log use increasing epochs. Default 0. */
  epoch?: number
  /** A streaming client not heard from (requests or heartbeat pings) for this long is forgotten. Default 180 000 ms. */
  clientTtlMs?: number
}

/** A running host; `close()` tells its clients it left. */
export interface BroadcastChannelHost {
  readonly hostId: string
  readonly epoch: number
  close(): Promise<void>
}

/**
 * Answers protocol requests arriving on a BroadcastChannel from a backend, for
 * a worker, a Node process or the tab elected by `host: 'auto'`.
 * @example const host = hostBroadcastChannel({ channel: 'todos', backend: memoryBackend() })
 */
export function hostBroadcastChannel(options: HostBroadcastChannelOptions): BroadcastChannelHost {
  const { backend, epoch = 0, clientTtlMs = 180_000 } = options
  const hostId = randomId()
  const bc = new BroadcastChannel(options.channel)
  const clients = new Map<string, { storeId: string; cursor: number; streaming: boolean; seen: number }>()
  const heads = new Map<string, number>()
  const unsubscribes = new Map<string, () => void>()
  const pumps = new Map<string, { busy: boolean; again: boolean }>()
  let live = true

  const send = (to: string, msg: Message) => { if (live) bc.postMessage({ ...msg, from: hostId, to, epoch }) }
  const noteHead = (storeId: string, head: number) => { if (head > (heads.get(storeId) ?? 0)) heads.set(storeId, head) }
  const stop = () => {
    live = false
    for (const unsubscribe of unsubscribes.values()) unsubscribe()
    bc.close()
  }

  // B3: one pump per storeId reads a page from the lowest cursor and hands each client the part past its own.
  const pump = (storeId: string) => {
    let state = pumps.get(storeId)
    if (!state) pumps.set(storeId, (state = { busy: false, again: false }))
    if (state.busy) return void (state.again = true)
    state.busy = true
    const run = state
    void (async () => {
      while (live) {
        const head = heads.get(storeId) ?? 0
        const now = Date.now()
        let since = Infinity
        for (const [id, c] of clients) {
          if (now - c.seen > clientTtlMs) clients.delete(id)
          else if (c.storeId === storeId && c.streaming && c.cursor < head) since = Math.min(since, c.cursor)
        }
        if (since === Infinity) break
        const page = await backend.pull(storeId, since, MAX_PULL_LIMIT)
        noteHead(storeId, page.head)
        const last = page.events[page.events.length - 1]?.seq
        if (last === undefined) break
        for (const [id, c] of clients) {
          // a client whose cursor is below `since` joined meanwhile: the next round serves it without a gap
          if (c.storeId !== storeId || !c.streaming || c.cursor < since || c.cursor >= last) continue
          send(id, { v: 1, type: 'events', storeId, events: page.events.slice(c.cursor - since), head: page.head })
          c.cursor = last
        }
      }
    })().catch(() => {
      // a failed read: these clients' next heartbeat learns they are not streaming, and they pull again
      for (const c of clients.values()) if (c.storeId === storeId) c.streaming = false
    }).finally(() => {
      run.busy = false
      if (run.again && live) (run.again = false), pump(storeId)
    })
  }

  const answer = async (raw: Message, from: string) => {
    const rid = typeof raw.rid === 'string' || typeof raw.rid === 'number' ? raw.rid : undefined
    try {
      const msg = parseClientMessage(raw)
      let peer = clients.get(from)
      if (!peer) clients.set(from, (peer = { storeId: msg.storeId, cursor: 0, streaming: false, seen: 0 }))
      peer.seen = Date.now()
      if (msg.type === 'push') {
        const res = await backend.push(msg.storeId, { parentSeq: msg.parentSeq, events: msg.events.map(toPending) })
        if (res.type === 'pushed') noteHead(msg.storeId, res.head)
        return send(from, { v: 1, rid, ...res })
      }
      const res = await backend.pull(msg.storeId, msg.since, msg.limit ?? MAX_PULL_LIMIT)
      noteHead(msg.storeId, res.head)
      if (!res.more) {
        if (peer.storeId !== msg.storeId) Object.assign(peer, { storeId: msg.storeId, cursor: 0 })
        // cursor and answer in one synchronous step: no pump round can slip events in between
        peer.streaming = true
        peer.cursor = Math.max(peer.cursor, msg.since + res.events.length)
        if (!unsubscribes.has(msg.storeId)) unsubscribes.set(msg.storeId, backend.subscribe(msg.storeId, (head) => { noteHead(msg.storeId, head); pump(msg.storeId) }))
      }
      send(from, { v: 1, rid, ...res })
      if (!res.more) pump(msg.storeId)
    } catch (error) {
      if (error instanceof ProtocolViolation) send(from, errorMessage(error.code, error.message, rid))
      else send(from, errorMessage('internal', `broadcast-channel host: the backend failed: ${(error as Error)?.message ?? error}. Retry later.`, rid))
    }
  }

  bc.onmessage = (event: MessageEvent) => {
    const m = event.data as Message
    if (!live || typeof m !== 'object' || m === null || typeof m.from !== 'string' || m.from === hostId) return
    if (m.type === 'host') return void (typeof m.epoch === 'number' && m.epoch > epoch && stop()) // B2
    if (m.to !== hostId && !(m.to === '*' && m.type === 'ping')) return
    const peer = clients.get(m.from)
    if (m.type === 'ping') {
      if (peer) peer.seen = Date.now()
      send(m.from, { v: 1, type: 'host', streaming: peer?.streaming ?? false })
    } else if (m.type === 'bye') clients.delete(m.from)
    else void answer(m, m.from)
  }
  send('*', { v: 1, type: 'host' })

  return {
    hostId,
    epoch,
    async close() {
      send('*', { v: 1, type: 'bye' })
      if (live) stop()
    },
  }
}
