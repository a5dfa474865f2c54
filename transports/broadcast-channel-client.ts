/**
 * PROTOCOL.md over a BroadcastChannel. One host answers `pull`/`push` for many
 * clients on one named channel; every message carries `from` and `to` ids and
 * the host stamps its own with a fencing `epoch`.
 *
 *   client -> host   { v, type: 'pull' | 'push', rid, ..., from, to: hostId }
 *                    { v, type: 'ping', from, to: hostId | '*' }    host discovery and heartbeat
 *                    { v, type: 'bye', from, to: hostId }           the client left
 *   host -> client   { v, rid, ...answer, from, to, epoch }         pulled / pushed / rejected / error
 *                    { v, type: 'events', storeId, events, head, from, to, epoch }
 *                        (from a storage owner tab, the view's end also carries pending, ownerState,
 *                        backendId and, when it has no transport, ownerUpstream: false; PROTOCOL.md, Tabs)
 *                    { v, type: 'host', streaming?, from, to: clientId | '*', epoch }  ping answer or announcement
 *                    { v, type: 'bye', from, to: '*', epoch }       the host left
 *
 * The types of these messages are in broadcast-channel-messages.ts.
 *
 * Invariants:
 *  B1. A client takes answers only from its current host, and never from an
 *      epoch older than the newest it has seen: a stale host cannot answer
 *      once a newer one was heard.
 *  B2. A host that hears a higher epoch stops answering.
 *  B3. Live `events` go to each client from its own cursor, in seq order, without gaps,
 *      and only after that client's pull answered `more: false`.
 */
import { TransportError } from '../src/errors.js'
import { randomId } from '../src/ids.js'
import type { ClientMessage, PullResponse, PushResponse, QueuedResponse } from '../src/protocol.js'
import { createRequestTable } from '../src/request-table.js'
import { type Transport, type TransportHandlers, transportRules } from '../src/transport.js'
import { type ClientSends, type HostSends, type HostToClient, type OwnerExtras, routed } from './broadcast-channel-messages.js'
import { expectType, protocolError } from './shared.js'

/** A protocol request before the request table gives it its rid. */
type Unsent = ClientMessage extends infer M ? (M extends ClientMessage ? Omit<M, 'v' | 'rid'> : never) : never
/** A host's answer to a request. */
type Answer = Extract<HostSends, { rid?: string | number }>

/** The client's options (those of `broadcastChannelTransport` without the host election). */
export interface BroadcastChannelClientOptions {
  /** BroadcastChannel name shared by the host and its clients. */
  channel: string
  /** How long a request waits for the host's answer before failing (retryably); default 5000 ms. */
  requestTimeoutMs?: number
  /** How often an online client checks that its host is still there; default 15 000 ms. */
  heartbeatMs?: number
  /** Hears what a storage owner tab's views say of it beyond the protocol (the tab link, TabLinks.connect). */
  onOwner?: (owner: { upstream: boolean }) => void
}

/** Started at connect, next to the client (the host election of `host: 'auto'`); returns how to stop it. */
export type AlongsideClient = (onError: (error: Error) => void) => () => Promise<void>

/** What the request table keeps of a request: the message, to send it again to a host found later, and whether a host got it. */
interface Request {
  message: ClientSends
  what: string
  sent: boolean
}

/**
 * The client half of the BroadcastChannel mapping, for `broadcastChannelTransport`
 * and the tab link (tab-link.ts), which reach a host elsewhere on the channel.
 */
export function broadcastChannelClient(options: BroadcastChannelClientOptions, alongside?: AlongsideClient): Transport {
  const { channel, requestTimeoutMs = 5000, heartbeatMs = 15_000, onOwner } = options
  // a host on a BroadcastChannel answers a ping within milliseconds; waiting longer only delays `offline`
  const pongTimeoutMs = Math.min(requestTimeoutMs, 1000)
  const clientId = randomId()
  const requests = createRequestTable<Request>({
    timeoutMs: requestTimeoutMs,
    rid: (n) => `${clientId}:${n}`,
    timeoutError: (req) =>
      new TransportError(`broadcastChannelTransport: no answer to ${req.what} from a host on channel "${channel}" within ${requestTimeoutMs} ms; retrying`),
    // a host that does not answer a request it got is gone
    onTimeout: (error, req) => {
      if (req.sent && hostId) lost(error)
    },
  })
  let handlers: TransportHandlers | undefined
  let bc: BroadcastChannel | undefined
  let hostId: string | undefined
  let maxEpoch = -Infinity
  let state: 'connecting' | 'online' | 'offline' = 'connecting'
  let streaming = false // our last pull answered more: false, so the host should be streaming to us
  let awaitingPong = false
  let timer: ReturnType<typeof setTimeout> | undefined
  let closed = false
  const rules = transportRules('broadcastChannelTransport')
  let settleFirst: (() => void) | undefined
  let resign: (() => Promise<void>) | undefined

  const post = (msg: ClientSends, to: string) => bc?.postMessage({ ...msg, from: clientId, to })
  const setOnline = (value: boolean, error?: Error) => {
    const next = value ? 'online' : 'offline'
    if (state !== next && !closed) {
      state = next
      handlers?.onStatus(value ? { state: 'online' } : { state: 'offline', error })
    }
    settleFirst?.()
  }
  const send = (req: Request) => {
    if (!hostId) return
    req.sent = true
    post(req.message, hostId)
  }

  // Heartbeat while a host is known, discovery pings to '*' while none is.
  const tick = () => {
    clearTimeout(timer)
    if (closed) return
    if (awaitingPong) {
      if (hostId) return lost(new TransportError(`broadcastChannelTransport: the host on channel "${channel}" stopped answering; waiting for a host`))
      setOnline(
        false,
        new TransportError(`broadcastChannelTransport: no host answers on channel "${channel}"; start hostBroadcastChannel() or use host: 'auto'. Retrying.`),
      )
    }
    awaitingPong = true
    post({ v: 1, type: 'ping' }, hostId ?? '*')
    timer = setTimeout(tick, pongTimeoutMs)
  }
  /** Requests sent to a host that is gone get no answer: reject them now (retryably) rather than at their timeout. */
  const abandon = (error: Error) => {
    for (const { rid, data } of requests.pending()) if (data.sent) requests.take(rid)?.reject(error)
  }
  const lost = (error: Error) => {
    hostId = undefined
    streaming = false
    awaitingPong = false
    abandon(error)
    setOnline(false, error)
    tick()
  }
  const adopt = (from: string, epoch: number, announced: boolean) => {
    if (from !== hostId && hostId !== undefined && epoch === maxEpoch && !announced) return // a second host's late ping answer
    const switched = hostId !== undefined && from !== hostId
    maxEpoch = epoch
    if (from !== hostId) {
      if (hostId !== undefined) abandon(new TransportError(`broadcastChannelTransport: another host took over channel "${channel}"; retrying`))
      hostId = from
      streaming = false
      for (const { data } of requests.pending()) send(data) // those made before any host was known
    }
    // the new host keeps no cursor for us: offline then online makes the engine pull, which restarts the stream
    if (switched) setOnline(false)
    setOnline(true)
    awaitingPong = false
    clearTimeout(timer)
    timer = setTimeout(tick, heartbeatMs)
  }

  const onMessage = (event: MessageEvent) => {
    const message = routed(event.data)
    // only hosts stamp an epoch: this skips other clients' messages
    if (message === undefined || !('epoch' in message) || typeof message.epoch !== 'number') return
    const m: HostToClient = message
    if ((m.to !== clientId && m.to !== '*') || m.epoch < maxEpoch) return // B1
    if (m.type === 'host') {
      adopt(m.from, m.epoch, m.to === '*')
      // the host forgot us: offline then online makes the engine pull, which restarts the stream
      if (m.streaming === false && streaming && m.from === hostId) {
        setOnline(false)
        setOnline(true)
      }
      return
    }
    if (m.from !== hostId) return
    if (m.type === 'bye') return lost(new TransportError(`broadcastChannelTransport: the host on channel "${channel}" closed; waiting for a new host`))
    if (m.type === 'events') {
      if (m.pending) onOwner?.({ upstream: m.ownerUpstream !== false })
      if (handlers && m.storeId === handlers.storeId)
        handlers.onEvents(m.events, m.head, m.pending ? { pending: m.pending, state: m.ownerState, backendId: m.backendId } : undefined)
      return
    }
    const req = m.rid === undefined ? undefined : requests.take(String(m.rid))
    if (!req) return
    if (m.type === 'error') req.reject(protocolError(m, `The broadcast-channel host on "${channel}"`))
    else req.resolve(m)
  }

  const request = (message: Unsent, what: string): Promise<Answer> => {
    if (closed || !bc) return Promise.reject(rules.cannotSend(closed))
    if (state === 'offline' && !hostId)
      return Promise.reject(new TransportError(`broadcastChannelTransport: cannot ${what}, no host answers on channel "${channel}"; retrying`))
    // the table names the rid, which the message carries: it is filled in right after
    const req: Request = { message: { v: 1, type: 'ping' }, what, sent: false }
    const { rid, answer } = requests.open<Answer>(req)
    req.message = { ...message, v: 1, rid } as ClientSends
    send(req)
    return answer
  }

  return {
    async connect(h) {
      rules.checkConnect(closed, bc !== undefined)
      if (alongside) resign = alongside((error) => setOnline(false, error))
      handlers = h
      h.onStatus({ state: 'connecting' })
      bc = new BroadcastChannel(channel)
      bc.onmessage = onMessage
      const first = new Promise<void>((resolve) => {
        settleFirst = resolve
      })
      tick()
      await first
      settleFirst = undefined
    },
    async pull(request_): Promise<PullResponse> {
      const m = expectType<PullResponse & OwnerExtras>(
        await request({ type: 'pull', storeId: request_.storeId, since: request_.since, limit: request_.limit }, 'pull'),
        ['pulled'],
        'pull',
      )
      if (!m.more) streaming = true
      if (m.pending) onOwner?.({ upstream: m.ownerUpstream !== false })
      // `pending` comes from a storage owner tab (PROTOCOL.md, Tabs)
      return {
        type: 'pulled',
        events: m.events,
        head: m.head,
        backendId: m.backendId,
        more: m.more,
        ...(m.pending ? { pending: m.pending, ownerState: m.ownerState } : {}),
      }
    },
    async push(request_): Promise<PushResponse | QueuedResponse> {
      const m = expectType<PushResponse | QueuedResponse>(await request({ type: 'push', ...request_ }, 'push'), ['pushed', 'rejected', 'queued'], 'push')
      if (m.type === 'pushed') return { type: 'pushed', firstSeq: m.firstSeq, head: m.head, backendId: m.backendId }
      if (m.type === 'rejected') return { type: 'rejected', reason: 'behind', head: m.head }
      return { type: 'queued' }
    },
    async close() {
      if (closed) return
      if (hostId) post({ v: 1, type: 'bye' }, hostId)
      setOnline(false)
      closed = true
      clearTimeout(timer)
      requests.rejectAll(rules.closed())
      bc?.close()
      await resign?.()
    },
  }
}
