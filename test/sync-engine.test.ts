/**
 * The sync engine's ordering rules, against a scripted host and transport
 * (src/sync-engine.ts, invariants S1–S3). Store-level behaviour is covered
 * in sync.test.ts; this checks what the store cannot show deterministically
 * in one thread: what a push carries and when it leaves.
 */

import type { ConfirmedEvent, PendingEvent, PullResponse, PushResponse, Transport } from 'tidelog'
import { describe, expect, it } from 'vitest'
import { createSyncEngine, type SyncHost } from '../src/sync-engine.js'

const upstream = (seq: number): ConfirmedEvent => ({ seq, id: `o:${seq}`, name: 'x', args: null, clientId: 'o', sessionId: 's', createdAt: 0 })
const mine: PendingEvent = { id: 'me:1', name: 'x', args: null, clientId: 'me', sessionId: 's', createdAt: 0 }

/** Every pull finds one new upstream event; the first `losses` pushes are rejected; `count` events are pending, pushed one at a time. */
function scripted(losses: number, anyHead: boolean, count = 1) {
  const trail: string[] = []
  let head = 0
  let backendHead = 0
  let pending = count
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
      trail.push(`push@${req.parentSeq}${req.anyHead ? ' anyHead' : ''} (${req.backendId})`)
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
    pendingBatch: () => (pending ? [{ ...mine, id: `me:${count - pending + 1}` }] : []),
    applyUpstream(events) {
      trail.push(`rebase@${events[events.length - 1]!.seq}`)
      head = events[events.length - 1]!.seq
    },
    confirm(firstSeq) {
      trail.push(`confirm@${firstSeq}`)
      head = firstSeq
      if (--pending === 0) done()
    },
    setState() {},
    anyHead: () => anyHead,
  }
  const engine = createSyncEngine(transport, host, { batchSize: 1 })
  return { trail, engine, finished }
}

describe('sync engine: when a push asks for anyHead', () => {
  it('rebases before every push (S1), naming the backendId; after two lost races it asks for anyHead (S2)', async () => {
    const { trail, engine, finished } = scripted(2, true)
    engine.start()
    await finished
    await engine.close()
    expect(trail).toEqual(['rebase@1', 'push@1 (b)', 'rebase@2', 'push@2 (b)', 'rebase@3', 'push@3 anyHead (b)', 'confirm@4'])
  })

  it('goes on asking for anyHead until nothing is pending, instead of losing two races per batch again', async () => {
    const { trail, engine, finished } = scripted(2, true, 3)
    engine.start()
    await finished
    await engine.close()
    expect(trail).toEqual([
      'rebase@1',
      'push@1 (b)',
      'rebase@2',
      'push@2 (b)',
      'rebase@3',
      'push@3 anyHead (b)',
      'confirm@4',
      'rebase@5',
      'push@5 anyHead (b)',
      'confirm@6',
      'rebase@7',
      'push@7 anyHead (b)',
      'confirm@8',
    ])
  })

  it('never asks for anyHead when a merge hook must see every upstream event first', async () => {
    const { trail, engine, finished } = scripted(3, false)
    engine.start()
    await finished
    await engine.close()
    expect(trail).toEqual(['rebase@1', 'push@1 (b)', 'rebase@2', 'push@2 (b)', 'rebase@3', 'push@3 (b)', 'rebase@4', 'push@4 (b)', 'confirm@5'])
  })
})

describe('sync engine: catching up', () => {
  /** A backend of `total` events served in pages of `pageSize`; the trail tells when pages were asked for and applied. */
  function paged(total: number, pageSize: number, failAt?: number) {
    const trail: string[] = []
    let head = 0
    let synced!: () => void
    const done = new Promise<void>((r) => (synced = r))
    const transport: Transport = {
      async connect(h) {
        h.onStatus({ state: 'online' })
      },
      async pull(req): Promise<PullResponse> {
        trail.push(`pull@${req.since}`)
        const events: ConfirmedEvent[] = []
        for (let s = req.since + 1; s <= Math.min(total, req.since + pageSize); s++) events.push(upstream(s))
        // a page that skips a seq: the client must refuse it and ask again from its head
        if (failAt !== undefined && req.since === failAt) {
          failAt = undefined
          events.shift()
        }
        return { type: 'pulled', events, head: total, backendId: 'b', more: req.since + pageSize < total }
      },
      async push(): Promise<PushResponse> {
        throw new Error('nothing to push')
      },
      async close() {},
    }
    const host: SyncHost = {
      storeId: 's',
      head: () => head,
      backendId: () => 'b',
      pendingCount: () => 0,
      pendingBatch: () => [],
      applyUpstream(events) {
        trail.push(`apply@${events[0]!.seq}-${events[events.length - 1]!.seq}`)
        head = events[events.length - 1]!.seq
      },
      confirm() {},
      setState(state) {
        if (state === 'synced' && head === total) synced()
      },
      anyHead: () => false,
    }
    return { trail, engine: createSyncEngine(transport, host, { minBackoffMs: 1, maxBackoffMs: 5 }), done }
  }

  it('asks for the next page before applying the one it has, so that the backend and the network work meanwhile', async () => {
    const { trail, engine, done } = paged(3000, 1000)
    engine.start()
    await done
    await engine.close()
    expect(trail).toEqual(['pull@0', 'pull@1000', 'apply@1-1000', 'pull@2000', 'apply@1001-2000', 'apply@2001-3000'])
  })

  it('drops the page asked for ahead when the one before it is refused, and goes on from its head', async () => {
    const { trail, engine, done } = paged(3000, 1000, 1000)
    engine.start()
    await done
    await engine.close()
    // the page after 1000 skips 1001: refused; the one asked for ahead of it (from 2000) is not applied
    expect(trail.filter((t) => t.startsWith('apply'))).toEqual(['apply@1-1000', 'apply@1001-2000', 'apply@2001-3000'])
    expect(trail.slice(0, 4)).toEqual(['pull@0', 'pull@1000', 'apply@1-1000', 'pull@2000'])
  })
})
