import { TransportError } from './errors.js'
import type { ErrorMessage, PullRequest, PullResponse, PushRequest, PushResponse } from './protocol.js'
import { createRequestTable } from './request-table.js'
import { createServerSession, type ServerSession } from './server/session.js'
import { type SyncBackend, type Transport, type TransportHandlers, transportRules } from './transport.js'

/** Options of `localTransport`. */
export interface LocalTransportOptions {
  /** A request the backend has not answered after this long rejects with a retryable TransportError. Default 30_000. */
  requestTimeoutMs?: number
}

/**
 * Connects a store to a backend in the same process (tests, workers,
 * embedding) through the same server session every wire uses: messages are
 * serialized as if they crossed a wire, and live notifications follow the
 * protocol (after a pull that reached the head, new events stream in seq
 * order without gaps).
 * @example createStore({ schema, transport: localTransport(memoryBackend()) })
 */
export function localTransport(backend: SyncBackend, options: LocalTransportOptions = {}): Transport {
  const requestTimeoutMs = options.requestTimeoutMs ?? 30_000
  let handlers: TransportHandlers | undefined
  let session: ServerSession | undefined
  let closed = false
  const rules = transportRules('localTransport')
  // data: what was asked, for the timeout message
  const requests = createRequestTable<string>({
    timeoutMs: requestTimeoutMs,
    timeoutError: (what) => new TransportError(`localTransport: the backend did not answer ${what} within ${requestTimeoutMs} ms; retry it.`),
  })

  const deliver = (text: string) => {
    if (closed || !handlers) return
    const message = JSON.parse(text) as {
      type: string
      rid?: number
      events?: PullResponse['events']
      head?: number
      code?: ErrorMessage['code']
      message?: string
      retryable?: boolean
    }
    if (message.type === 'events') {
      if (message.events?.length) handlers.onEvents(message.events, message.head ?? 0)
      return
    }
    const request = requests.take(message.rid)
    if (!request) return
    if (message.type === 'error') {
      return request.reject(new TransportError(`localTransport: ${message.message}`, { retryable: message.retryable === true, protocolCode: message.code }))
    }
    const { v: _v, rid: _rid, ...answer } = message as typeof message & { v?: number }
    request.resolve(answer)
  }

  const call = <T>(message: { type: 'pull' | 'push'; storeId: string }): Promise<T> => {
    if (closed || !session) return Promise.reject(rules.cannotSend(closed))
    const { rid, answer } = requests.open<T>(`a ${message.type} of storeId "${message.storeId}"`)
    session.receive(JSON.stringify({ v: 1, rid, ...message }))
    return answer
  }

  return {
    async connect(h) {
      rules.checkConnect(closed, session !== undefined)
      handlers = h
      session = createServerSession({
        backend,
        label: 'localTransport',
        revealErrors: true,
        onError: () => {}, // the error reaches the caller in the answer
        wire: {
          send: (text) => {
            queueMicrotask(() => deliver(text))
            return true
          },
        },
      })
      h.onStatus({ state: 'online' })
    },
    pull: (request: PullRequest) => call<PullResponse>({ type: 'pull', ...request }),
    push: (request: PushRequest) => call<PushResponse>({ type: 'push', ...request }),
    async close() {
      if (closed) return
      closed = true
      session?.close()
      requests.rejectAll(rules.closed())
      handlers?.onStatus({ state: 'offline' })
    },
  }
}
