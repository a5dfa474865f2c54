import { TransportError } from './errors.js'
import type { ErrorMessage, PullRequest, PullResponse, PushRequest, PushResponse } from './protocol.js'
import { createServerSession, type ServerSession } from './server/session.js'
import type { SyncBackend, Transport, TransportHandlers } from './transport.js'

/**
 * Connects a store to a backend in the same process (tests, workers,
 * embedding) through the same server session every wire uses: messages are
 * serialized as if they crossed a wire, and live notifications follow the
 * protocol (after a pull that reached the head, new events stream in seq
 * order without gaps).
 * @example createStore({ schema, transport: localTransport(memoryBackend()) })
 */
export function localTransport(backend: SyncBackend): Transport {
  let handlers: TransportHandlers | undefined
  let session: ServerSession | undefined
  let closed = false
  let nextRid = 1
  const requests = new Map<number, { resolve(answer: unknown): void; reject(error: Error): void }>()

  const deliver = (text: string) => {
    if (closed || !handlers) return
    const message = JSON.parse(text) as { type: string; rid?: number; events?: PullResponse['events']; head?: number; code?: ErrorMessage['code']; message?: string; retryable?: boolean }
    if (message.type === 'events') {
      if (message.events?.length) handlers.onEvents(message.events, message.head ?? 0)
      return
    }
    const request = message.rid === undefined ? undefined : requests.get(message.rid)
    if (!request) return
    requests.delete(message.rid!)
    if (message.type === 'error') {
      return request.reject(new TransportError(`localTransport: ${message.message}`, { retryable: message.retryable === true, protocolCode: message.code }))
    }
    const { v: _v, rid: _rid, ...answer } = message as typeof message & { v?: number }
    request.resolve(answer)
  }

  const call = <T>(message: object): Promise<T> => {
    if (closed || !session) {
      return Promise.reject(new TransportError(`localTransport: cannot send, the transport is ${closed ? 'closed' : 'not connected'}`, { retryable: false }))
    }
    const rid = nextRid++
    const answered = new Promise<T>((resolve, reject) => requests.set(rid, { resolve: resolve as (answer: unknown) => void, reject }))
    session.receive(JSON.stringify({ v: 1, rid, ...message }))
    return answered
  }

  return {
    async connect(h) {
      if (closed) throw new TransportError('localTransport: closed transports cannot reconnect; create a new one', { retryable: false })
      handlers = h
      session = createServerSession({
        backend,
        label: 'localTransport',
        revealErrors: true,
        onError: () => {}, // the error reaches the caller in the answer
        wire: { send: (text) => (queueMicrotask(() => deliver(text)), true) },
      })
      h.onStatus({ state: 'online' })
    },
    pull: (request: PullRequest) => call<PullResponse>({ type: 'pull', ...request }),
    push: (request: PushRequest) => call<PushResponse>({ type: 'push', ...request }),
    async close() {
      if (closed) return
      closed = true
      session?.close()
      for (const request of requests.values()) request.reject(new TransportError('localTransport was closed; the request was not answered.', { retryable: false }))
      requests.clear()
      handlers?.onStatus({ state: 'offline' })
    },
  }
}
