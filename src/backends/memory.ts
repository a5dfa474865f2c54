import { randomId } from '../ids.js'
import { type ConfirmedEvent, MAX_PULL_LIMIT, type PullResponse, type PushResponse } from '../protocol.js'
import type { SyncBackend } from '../transport.js'
import { createHeadListeners } from './head-listeners.js'
import { judgePush } from './judge-push.js'

interface Log {
  events: ConfirmedEvent[]
  seqById: Map<string, number>
}

/**
 * A sync backend held in memory: total order, atomic batches, idempotent
 * pushes, live subscriptions. For tests, workers and embedding.
 * @example createSyncServer({ backend: memoryBackend() })
 */
export function memoryBackend(): SyncBackend & { readonly backendId: string } {
  const backendId = randomId()
  const logs = new Map<string, Log>()
  const listeners = createHeadListeners()
  const logOf = (storeId: string): Log => {
    let log = logs.get(storeId)
    if (!log) {
      log = { events: [], seqById: new Map() }
      logs.set(storeId, log)
    }
    return log
  }
  return {
    backendId,
    async pull(storeId, since, limit): Promise<PullResponse> {
      const log = logOf(storeId)
      const n = Math.max(1, Math.min(limit, MAX_PULL_LIMIT))
      const events = log.events.slice(since, since + n).map((e) => ({ ...e }))
      const head = log.events.length
      return { type: 'pulled', events, head, backendId, more: since + events.length < head }
    },
    async push(storeId, request): Promise<PushResponse> {
      const { parentSeq, events } = request
      const log = logOf(storeId)
      const verdict = judgePush({ head: log.events.length, seqOf: (id) => log.seqById.get(id), backendId }, parentSeq, events, request)
      if (verdict.kind === 'retry') return { type: 'pushed', firstSeq: verdict.firstSeq, head: log.events.length, backendId }
      if (verdict.kind === 'rejected') return { type: 'rejected', reason: 'behind', head: log.events.length }
      const firstSeq = log.events.length + 1
      events.forEach((e, i) => {
        const seq = firstSeq + i
        log.events.push({ seq, id: e.id, name: e.name, args: structuredClone(e.args), clientId: e.clientId, sessionId: e.sessionId, createdAt: e.createdAt })
        log.seqById.set(e.id, seq)
      })
      const head = log.events.length
      listeners.notify(storeId, head)
      return { type: 'pushed', firstSeq, head, backendId }
    },
    subscribe: listeners.subscribe,
    async close() {
      listeners.clear()
    },
  }
}
