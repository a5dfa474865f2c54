/**
 * The sync engine's ordering rules, against a scripted host and transport
 * (src/sync-engine.ts, invariants S1–S3). Store-level behaviour is covered
 * in sync.test.ts; this checks what the store cannot show deterministically
 * in one thread: when the push leaves relative to the rebase.
 */

import type { ConfirmedEvent, PendingEvent, PullResponse, PushResponse, Transport } from 'tidelog'
import { describe, expect, it } from 'vitest'
import { createSyncEngine, type SyncHost } from '../src/sync-engine.js'

const upstream = (seq: number): ConfirmedEvent => ({ seq, id: `o:${seq}`, name: 'x', args: null, clientId: 'o', sessionId: 's', createdAt: 0 })
const mine: PendingEvent = { id: 'me:1', name: 'x', args: null, clientId: 'me', sessionId: 's', createdAt: 0 }

/** Every pull finds one new upstream event; the first `losses` pushes are rejected. */
function scripted(losses: number, pushBeforeRebase: boolean) {
  const trail: string[] = []
  let head = 0
  let backendHead = 0
  let pending = 1
  let done!: () => void
  const finished = new Promise<void>((r) => (done = r))
  const transport: Transport = {
    async connect(h) {
      h.onStatus({ state: 'online' })
    },
    async pull(req): Promise<PullResponse> {
      if (pending) backendHead++ // another client got in since
      const events = [] as ConfirmedEvent[]
      for (let s = req.since + 1; s <= backendHead; s++) events.push(upstream(s))
      return { type: 'pulled', events, head: backendHead, backendId: 'b', more: false }
    },
    async push(req): Promise<PushResponse> {
      trail.push(`push@${req.parentSeq}`)
      if (losses-- > 0) return { type: 'rejected', reason: 'behind', head: backendHead }
      backendHead++
      return { type: 'pushed', firstSeq: backendHead, head: backendHead, backendId: 'b' }
    },
    async close() {},
  }
  const host: SyncHost = {
    storeId: 's',
    head: () => head,
    backendId: () => 'b',
    pendingCount: () => pending,
    pendingBatch: () => (pending ? [mine] : []),
    applyUpstream(events) {
      trail.push(`rebase@${events[events.length - 1]!.seq}`)
      head = events[events.length - 1]!.seq
    },
    confirm(firstSeq) {
      trail.push(`confirm@${firstSeq}`)
      head = firstSeq
      pending = 0
      done()
    },
    setState() {},
    pushBeforeRebase: () => pushBeforeRebase,
  }
  const engine = createSyncEngine(transport, host)
  return { trail, engine, finished }
}

describe('sync engine: when the push leaves', () => {
  it('rebases before pushing while it wins (S1), and pushes before rebasing once it lost two races (S2)', async () => {
    const { trail, engine, finished } = scripted(2, true)
    engine.start()
    await finished
    await engine.close()
    expect(trail).toEqual([
      'rebase@1',
      'push@1', // pull, rebase, push: rejected
      'rebase@2',
      'push@2', // rejected again: two losses
      'push@3',
      'rebase@3', // the push leaves on the pulled head before the rebase
      'confirm@4',
    ])
  })

  it('always rebases first when a merge hook may still drop or rewrite pending events', async () => {
    const { trail, engine, finished } = scripted(3, false)
    engine.start()
    await finished
    await engine.close()
    expect(trail).toEqual(['rebase@1', 'push@1', 'rebase@2', 'push@2', 'rebase@3', 'push@3', 'rebase@4', 'push@4', 'confirm@5'])
  })
})
