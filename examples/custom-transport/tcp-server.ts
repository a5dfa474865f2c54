// The server half of a custom transport: NDJSON (one JSON message per line)
// over TCP. The wire only moves lines; createServerSession answers them from
// the backend, streams live events and asks for backpressure.
import { createServer, type Server, type Socket } from 'node:net'
import { createServerSession, type ServerSession, type SyncBackend } from 'tidelog/server'

/** Options of `serveTcp`. */
export interface TcpServerOptions {
  backend: SyncBackend
  /** 0 picks a free port. */
  port: number
  /** Default '127.0.0.1'. */
  host?: string
  /** Decides whether `token` may sync `storeId`; default: everyone may. */
  authenticate?: (storeId: string, token: string | undefined) => boolean | Promise<boolean>
  /** An idle connection hears an empty `events` line this often, so that the client can tell a silent server from a dead one. Default 15_000. */
  keepaliveMs?: number
  /** Longest line accepted from a client, in characters; a longer one closes the connection. Default 2 MiB. */
  maxLineChars?: number
}

/** A running TCP sync server. */
export interface TcpServer {
  readonly port: number
  /** Bytes written to client sockets and not yet sent: what backpressure keeps bounded. */
  bufferedBytes(): number
  /** Stops listening and closes every connection. */
  close(): Promise<void>
}

const line = (message: object) => `${JSON.stringify({ v: 1, ...message })}\n`

/**
 * Serves the sync protocol over TCP, one connection per store: the client's
 * first line is `{ type: 'hello', storeId, token }`, answered `welcome` or an
 * `unauthorized` error; every later line goes to the server session.
 * @example const server = await serveTcp({ backend: memoryBackend(), port: 0 })
 */
export async function serveTcp(options: TcpServerOptions): Promise<TcpServer> {
  const keepaliveMs = options.keepaliveMs ?? 15_000
  const maxLineChars = options.maxLineChars ?? 2 * 1024 * 1024
  const sockets = new Set<Socket>()

  const server: Server = createServer((socket) => {
    sockets.add(socket)
    socket.setNoDelay(true)
    // a client that vanished without a FIN is found by the kernel's keepalive probes
    socket.setKeepAlive(true, keepaliveMs)
    socket.setEncoding('utf8')
    let session: ServerSession | undefined
    let storeId: string | undefined
    let buffer = ''
    let lastSent = Date.now()

    const send = (text: string) => {
      lastSent = Date.now()
      // false: past the socket's high-water mark; the session stops streaming until 'drain'
      return socket.write(`${text}\n`)
    }
    const keepalive = setInterval(() => {
      if (session && storeId !== undefined && Date.now() - lastSent >= keepaliveMs)
        send(JSON.stringify({ v: 1, type: 'events', storeId, events: [], head: session.cursor }))
    }, keepaliveMs)

    let deciding = false // the hello is being checked
    let busy = false // the session asked to stop reading

    // Lines go to the session one by one, except while the hello is decided or the session is busy.
    const take = (chunk: string) => {
      buffer += chunk
      while (!deciding && !busy) {
        const end = buffer.indexOf('\n')
        if (end < 0) break
        const text = buffer.slice(0, end)
        buffer = buffer.slice(end + 1)
        if (session) session.receive(text)
        else {
          deciding = true
          socket.pause()
          void hello(text)
            .catch(() => socket.destroy()) // the authenticate hook failed
            .finally(() => {
              deciding = false
              if (!session) return
              socket.resume()
              take('')
            })
        }
      }
      if (buffer.length > maxLineChars) {
        socket.off('data', take)
        buffer = ''
        socket.end(
          line({ type: 'error', code: 'too_large', message: `A line is longer than ${maxLineChars} characters; send smaller batches.`, retryable: false }),
        )
      }
    }

    const hello = async (text: string) => {
      let message: { type?: unknown; storeId?: unknown; token?: unknown } = {}
      try {
        message = JSON.parse(text)
      } catch {}
      if (message.type !== 'hello' || typeof message.storeId !== 'string') {
        socket.end(line({ type: 'error', code: 'invalid_message', message: 'Send { "type": "hello", "storeId": "<id>" } first.', retryable: false }))
        return
      }
      const token = typeof message.token === 'string' ? message.token : undefined
      const allowed = await (options.authenticate?.(message.storeId, token) ?? true)
      if (socket.destroyed) return
      if (!allowed) {
        socket.end(
          line({ type: 'error', code: 'unauthorized', message: `Not allowed to sync storeId "${message.storeId}": send a valid token.`, retryable: false }),
        )
        return
      }
      storeId = message.storeId
      session = createServerSession({
        backend: options.backend,
        storeId,
        label: 'tcp',
        wire: {
          send,
          onBusy(now) {
            busy = now
            if (now) return void socket.pause()
            socket.resume()
            take('')
          },
          onFailure: () => socket.destroy(),
        },
      })
      send(JSON.stringify({ v: 1, type: 'welcome' }))
    }

    socket.on('data', take)
    socket.on('drain', () => session?.drained())
    socket.on('error', () => {}) // 'close' follows
    socket.on('close', () => {
      clearInterval(keepalive)
      session?.close()
      sockets.delete(socket)
    })
  })

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(options.port, options.host ?? '127.0.0.1', () => {
      server.off('error', reject)
      resolve()
    })
  })

  return {
    port: (server.address() as { port: number }).port,
    bufferedBytes: () => [...sockets].reduce((sum, s) => sum + s.writableLength, 0),
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        for (const socket of sockets) socket.destroy()
      }),
  }
}
