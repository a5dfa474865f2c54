import type { WebSocket } from 'ws'
import { errorMessage } from '../protocol.js'
import type { ResolvedOptions } from './server-options.js'
import { createServerSession } from './session.js'

/** One authenticated WebSocket peer of one storeId, as the server's ping timer and shutdown see it. */
export interface SyncConnection {
  /** Ping timer tick: drops a peer silent for two whole intervals, else pings it (and sends a keepalive browsers can see). */
  tick(now: number): void
  /** Closes with `code`; resolves once the socket is closed, terminating it if the peer does not answer in time. */
  close(code: number, reason: string): Promise<void>
}

const OPEN = 1

/**
 * `ws` refuses a frame whose header declares more than its `maxPayload`
 * before reading the payload, and closes with 1009. This makes that refusal
 * the same as for any oversized message, a `too_large` error and close 4413,
 * by rewriting the status code on ws's receiver error before ws closes with
 * it. The hooks (`_receiver`, the 'status-code' symbol) are internals of ws
 * 8, so they are detected: without them the close stays 1009 (PROTOCOL.md).
 */
function refuseOversizedFramesWith4413(socket: WebSocket, tell: () => void): void {
  const receiver = (socket as unknown as { _receiver?: { prependListener?(event: string, fn: (error: Error & { code?: string }) => void): void } })._receiver
  receiver?.prependListener?.('error', (error) => {
    if (error.code !== 'WS_ERR_UNSUPPORTED_MESSAGE_LENGTH') return
    const statusCode = Object.getOwnPropertySymbols(error).find((key) => key.description === 'status-code')
    if (statusCode === undefined) return
    ;(error as unknown as Record<symbol, number>)[statusCode] = 4413
    tell()
  })
}

/**
 * The WebSocket wire of a server session (session.ts): moves frames, and
 * turns the session's backpressure into socket flow control.
 *
 * Invariants:
 * 1. While the session is busy (requests in flight at the window, or more
 *    than `maxBufferedBytes` waiting in the socket), the socket is paused:
 *    the peer's frames stay in the kernel, so a peer that floods without
 *    reading costs the server at most its window of answers.
 * 2. A peer whose buffer stays above `maxBufferedBytes` for
 *    `stalledTimeoutMs` is dropped.
 */
export function serveConnection(socket: WebSocket, storeId: string, opts: ResolvedOptions): SyncConnection {
  let gone = false
  let paused = false
  // ping timer ticks since the peer was last heard; counted in ticks, not ms, so that timer jitter cannot drop a live peer
  let silentTicks = 0
  let heard = true
  let lastSent = Date.now()
  let stalled: ReturnType<typeof setTimeout> | undefined

  const session = createServerSession({
    backend: opts.backend,
    storeId,
    limits: opts.limits,
    onError: opts.onError,
    label: 'WebSocket',
    wire: {
      send(text) {
        if (gone || socket.readyState !== OPEN) return true
        lastSent = Date.now()
        // the callback of a frame fires once everything before it reached the kernel
        socket.send(text, (error) => {
          if (error || gone) return
          if (stalled && socket.bufferedAmount <= opts.maxBufferedBytes) {
            clearTimeout(stalled)
            stalled = undefined
            session.drained()
          }
        })
        if (socket.bufferedAmount <= opts.maxBufferedBytes) return true
        stalled ??= setTimeout(() => socket.terminate(), opts.stalledTimeoutMs)
        return false
      },
      onBusy(busy) {
        if (gone || busy === paused) return
        paused = busy
        busy ? socket.pause() : socket.resume()
      },
      onFailure(reason) {
        if (!gone) socket.close(1011, reason.slice(0, 120))
      },
    },
  })

  socket.on('message', (data, isBinary) => {
    heard = true
    if (isBinary) {
      socket.send(JSON.stringify(errorMessage('invalid_message', 'Binary frames are not part of the protocol; send JSON text frames.')))
      return socket.close(4400, 'binary frames are not accepted')
    }
    const bytes = Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as Buffer)
    if (bytes.length > opts.limits.maxMessageBytes) {
      socket.send(JSON.stringify(errorMessage('too_large', `The message is larger than ${opts.limits.maxMessageBytes} bytes; send smaller pushes.`)))
      return socket.close(4413, 'message too large')
    }
    session.receive(bytes.toString('utf8'))
  })
  socket.on('pong', () => (heard = true))
  refuseOversizedFramesWith4413(socket, () => {
    if (socket.readyState === OPEN)
      socket.send(JSON.stringify(errorMessage('too_large', `The message is larger than ${opts.limits.maxMessageBytes} bytes; send smaller pushes.`)))
  })
  // ws reports protocol violations (bad frames, oversized payloads) here, then closes on its own
  socket.on('error', () => {})
  const closed = new Promise<void>((resolve) =>
    socket.once('close', () => {
      gone = true
      clearTimeout(stalled)
      session.close()
      resolve()
    }),
  )

  return {
    tick(now) {
      if (paused) return // not reading from the peer now, so its silence means nothing; the stall timer decides
      silentTicks = heard ? 0 : silentTicks + 1
      heard = false
      if (silentTicks >= 2) return socket.terminate()
      socket.ping()
      // browsers cannot see ping frames: an empty notification tells their heartbeat the server is there
      if (now - lastSent >= opts.pingIntervalMs) {
        lastSent = now
        socket.send(`{"v":1,"type":"events","storeId":${JSON.stringify(storeId)},"events":[],"head":${session.cursor}}`)
      }
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
