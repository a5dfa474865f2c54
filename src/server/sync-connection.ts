import type { WebSocket } from 'ws'
import { errorMessage, MAX_PULL_LIMIT, parseClientMessage, toPending, type ServerMessage } from '../protocol.js'
import { errorAnswer, ridOf, type ResolvedOptions } from './server-options.js'

/** One authenticated WebSocket peer of one storeId, as the server's ping timer and shutdown see it. */
export interface SyncConnection {
  /** Ping timer tick: drops a peer silent for two whole intervals, else pings it (and sends a keepalive browsers can see). */
  tick(now: number): void
  /** Closes with `code`; resolves once the socket is closed, terminating it if the peer does not answer in time. */
  close(code: number, reason: string): Promise<void>
}

const OPEN = 1

/**
 * Serves the protocol on one WebSocket: answers pull/push requests, and after
 * a pull that reached the head streams `events` for its storeId.
 *
 * Invariants of the live stream:
 * 1. `cursor` is the last seq this connection has been sent (by a page or a
 *    notification); a notification always starts at cursor + 1, so the peer
 *    sees its log in seq order without gaps.
 * 2. Events are read from the backend at the cursor, never queued in memory:
 *    a slow peer costs at most `maxBufferedBytes` plus one page.
 * 3. While the socket holds more than `maxBufferedBytes`, nothing more is read
 *    from or streamed to the peer; a peer stuck that way for
 *    `stalledTimeoutMs` is dropped.
 */
export function serveConnection(socket: WebSocket, storeId: string, opts: ResolvedOptions): SyncConnection {
  const { backend } = opts
  let cursor = 0
  let knownHead = 0
  let streaming = false
  let pumping = false
  let paused = false
  let gone = false
  // ping timer ticks since the peer was last heard; counted in ticks, not ms, so that timer jitter cannot drop a live peer
  let silentTicks = 0
  let heard = true
  let lastSent = Date.now()
  let lastWrite: Promise<void> = Promise.resolve()

  const send = (message: ServerMessage) => {
    if (gone || socket.readyState !== OPEN) return
    lastSent = Date.now()
    lastWrite = new Promise((resolve) => socket.send(JSON.stringify(message), () => resolve()))
    holdIfBehind()
  }

  // The send callback of the last frame fires once everything before it reached the kernel.
  function holdIfBehind() {
    if (paused || gone || socket.bufferedAmount <= opts.maxBufferedBytes) return
    paused = true
    socket.pause()
    const stalled = setTimeout(() => socket.terminate(), opts.stalledTimeoutMs)
    void lastWrite.then(() => {
      clearTimeout(stalled)
      paused = false
      if (gone) return
      if (socket.bufferedAmount > opts.maxBufferedBytes) return holdIfBehind()
      socket.resume()
      void pump()
    })
  }

  async function pump() {
    if (pumping) return
    pumping = true
    try {
      while (!gone && !paused && streaming && knownHead > cursor) {
        const page = await backend.pull(storeId, cursor, MAX_PULL_LIMIT)
        if (page.head > knownHead) knownHead = page.head
        if (page.events.length === 0) break
        // a pull answered meanwhile may have moved the cursor past part of this page
        const fresh = page.events.filter((e) => e.seq > cursor)
        if (fresh.length === 0 || gone) continue
        cursor = fresh[fresh.length - 1]!.seq
        send({ v: 1, type: 'events', storeId, events: fresh, head: page.head })
      }
    } catch (error) {
      opts.onError(error, `live events of ${storeId}`)
      socket.close(1011, 'live events failed; reconnect and pull')
    } finally {
      pumping = false
    }
  }

  const unsubscribe = backend.subscribe(storeId, (head) => {
    if (head > knownHead) knownHead = head
    void pump()
  })

  async function handle(text: string) {
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch {
      return send(errorMessage('invalid_message', 'The frame is not valid JSON; send one protocol message per text frame.'))
    }
    const rid = ridOf(raw)
    let message
    try {
      message = parseClientMessage(raw, { maxEventsPerPush: opts.maxEventsPerPush })
    } catch (error) {
      return send(errorAnswer(opts, error, 'WebSocket message', rid))
    }
    if (message.storeId !== storeId) {
      return send(errorMessage('invalid_message', `This connection syncs storeId "${storeId}"; open another connection (/sync?storeId=${message.storeId}) for "${message.storeId}".`, rid))
    }
    try {
      if (message.type === 'pull') {
        const { since } = message
        const page = await backend.pull(storeId, since, Math.min(message.limit ?? MAX_PULL_LIMIT, MAX_PULL_LIMIT))
        send(rid === undefined ? { v: 1, ...page } : { v: 1, rid, ...page })
        if (!page.more) {
          streaming = true
          cursor = Math.max(cursor, since + page.events.length)
          if (page.head > knownHead) knownHead = page.head
          void pump()
        }
      } else {
        const result = await backend.push(storeId, { parentSeq: message.parentSeq, events: message.events.map(toPending) })
        send(rid === undefined ? { v: 1, ...result } : { v: 1, rid, ...result })
      }
    } catch (error) {
      send(errorAnswer(opts, error, `WebSocket ${message.type} on ${storeId}`, rid))
    }
  }

  socket.on('message', (data, isBinary) => {
    heard = true
    if (isBinary) {
      send(errorMessage('invalid_message', 'Binary frames are not part of the protocol; send JSON text frames.'))
      return socket.close(4400, 'binary frames are not accepted')
    }
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
    if (bytes.length > opts.maxMessageBytes) {
      send(errorMessage('too_large', `The message is larger than ${opts.maxMessageBytes} bytes; send smaller pushes.`))
      return socket.close(4413, 'message too large')
    }
    void handle(bytes.toString('utf8'))
  })
  socket.on('pong', () => (heard = true))
  // ws reports protocol violations (bad frames, oversized payloads) here, then closes on its own
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) => socket.once('close', () => {
    gone = true
    unsubscribe()
    resolve()
  }))

  return {
    tick(now) {
      if (paused) return // not reading from the peer now, so its silence means nothing; the stall timer decides
      silentTicks = heard ? 0 : silentTicks + 1
      heard = false
      if (silentTicks >= 2) return socket.terminate()
      socket.ping()
      // browsers cannot see ping frames: an empty notification tells their heartbeat the server is there
      if (now - lastSent >= opts.pingIntervalMs) send({ v: 1, type: 'events', storeId, events: [], head: cursor })
    },
    async close(code, reason) {
      if (!gone) {
        socket.close(code, reason)
        const grace = setTimeout(() => socket.terminate(), 1000)
        await closed
        clearTimeout(grace)
      }
    },
  }
}
