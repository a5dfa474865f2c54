import { TransportError } from './errors.js'
import { MAX_PULL_LIMIT, ProtocolViolation, type PullRequest, type PullResponse, type PushRequest, type PushResponse } from './protocol.js'
import type { SyncBackend, Transport, TransportHandlers } from './transport.js'

/**
 * Connects a store to a backend in the same process (tests, workers,
 * embedding). Messages are copied as if they crossed a wire, and live
 * notifications follow the protocol: after a pull that reached the head,
 * new events are streamed in seq order without gaps.
 * @example createStore({ schema, transport: localTransport(memoryBackend()) })
 */
export function localTransport(backend: SyncBackend): Transport {
  let handlers: TransportHandlers | undefined
  let unsubscribe: (() => void) | undefined
  let streaming = false
  let cursor = 0 // last seq this connection has been sent
  let chain = Promise.resolve()
  let closed = false

  const ensureOpen = (what: string) => {
    if (closed || !handlers) throw new TransportError(`localTransport: cannot ${what}, the transport is ${closed ? 'closed' : 'not connected'}`, { retryable: false })
  }

  const forward = (head: number) => {
    chain = chain.then(async () => {
      while (!closed && streaming && handlers && head > cursor) {
        const page = await backend.pull(handlers.storeId, cursor, MAX_PULL_LIMIT)
        if (page.events.length === 0) break
        cursor = page.events[page.events.length - 1]!.seq
        handlers.onEvents(structuredClone(page.events), page.head)
      }
    }).catch((error) => handlers?.onStatus({ state: 'offline', error: error as Error }))
  }

  const call = async <T>(fn: () => Promise<T>): Promise<T> => {
    try {
      return structuredClone(await fn())
    } catch (error) {
      if (error instanceof ProtocolViolation) throw new TransportError(error.message, { cause: error, retryable: false, protocolCode: error.code })
      throw new TransportError(`localTransport: backend failed: ${(error as Error).message}`, { cause: error })
    }
  }

  return {
    async connect(h) {
      if (closed) throw new TransportError('localTransport: closed transports cannot reconnect; create a new one', { retryable: false })
      handlers = h
      unsubscribe = backend.subscribe(h.storeId, forward)
      h.onStatus({ state: 'online' })
    },
    async pull(request: PullRequest): Promise<PullResponse> {
      ensureOpen('pull')
      const res = await call(() => backend.pull(request.storeId, request.since, request.limit ?? MAX_PULL_LIMIT))
      const last = request.since + res.events.length
      if (!res.more) {
        streaming = true
        if (last > cursor) cursor = last
        if (res.head > cursor) forward(res.head)
      }
      return res
    },
    async push(request: PushRequest): Promise<PushResponse> {
      ensureOpen('push')
      const { storeId, ...rest } = structuredClone(request)
      return call(() => backend.push(storeId, rest))
    },
    async close() {
      closed = true
      unsubscribe?.()
      handlers?.onStatus({ state: 'offline' })
      await chain
    },
  }
}
