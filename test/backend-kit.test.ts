// The backend kit fails backends with the planted bugs it once missed: a
// write-behind backend (answers `pushed` before the data is durable) and one
// that accepts an empty push. Each broken backend is an honest one with one
// change, and the honest one passes the same cases.

import { createSyncServer, judgePush, MAX_PULL_LIMIT, memoryBackend, ProtocolViolation, type SyncBackend } from 'tidelog/server'
import { type BackendConformanceCase, backendConformanceCases } from 'tidelog/testing'
import { describe, expect, it } from 'vitest'

/** What survives a crash: a log store standing in for a disk, and the storeIds on it. */
interface Disk {
  log: ReturnType<typeof memoryBackend>
  storeIds: Set<string>
}

/**
 * A backend answering from a cache (a memoryBackend) and copying every
 * accepted batch to `disk`: before answering (`durable`), or 20 ms later
 * (`write-behind`). Opening one over a disk loads the cache from it; a crash
 * abandons the instance, whose copies still waiting never reach the disk.
 */
async function layered(disk: Disk, mode: 'durable' | 'write-behind'): Promise<SyncBackend & { disk: Disk; crash(): void }> {
  const cache = memoryBackend()
  for (const storeId of disk.storeIds) {
    for (let since = 0; ; ) {
      const page = await disk.log.pull(storeId, since, 1000)
      if (page.events.length > 0) await cache.push(storeId, { parentSeq: since, events: page.events.map(({ seq: _seq, ...e }) => e) })
      since += page.events.length
      if (!page.more) break
    }
  }
  let dead = false
  const backendId = disk.log.backendId
  return {
    disk,
    crash: () => void (dead = true),
    async pull(storeId, since, limit) {
      return { ...(await cache.pull(storeId, since, limit)), backendId }
    },
    async push(storeId, { backendId: basedOn, ...request }) {
      // the cache has a backendId of its own: the push's is checked against the disk's here
      if (basedOn !== undefined && basedOn !== backendId) return { type: 'rejected', reason: 'behind', head: (await cache.pull(storeId, 0, 1)).head }
      const answer = await cache.push(storeId, request)
      if (answer.type !== 'pushed') return answer
      const copy = async () => {
        if (dead) return
        disk.storeIds.add(storeId)
        await disk.log.push(storeId, { parentSeq: answer.firstSeq - 1, events: request.events })
      }
      if (mode === 'durable') await copy()
      else setTimeout(() => void copy(), 20)
      return { ...answer, backendId }
    },
    subscribe: (storeId, onHead) => cache.subscribe(storeId, onHead),
    close: () => cache.close(),
  }
}

function casesOver(mode: 'durable' | 'write-behind'): BackendConformanceCase[] {
  const reopenOrCrash = async (old: Awaited<ReturnType<typeof layered>>) => {
    old.crash()
    return layered(old.disk, mode)
  }
  return backendConformanceCases(() => layered({ log: memoryBackend(), storeIds: new Set() }, mode), {
    reopen: async (closed) => reopenOrCrash(closed as Awaited<ReturnType<typeof layered>>),
    crash: async (abandoned) => {
      const old = abandoned as Awaited<ReturnType<typeof layered>>
      old.crash()
      return layered(old.disk, mode)
    },
  })
}

/** memoryBackend, except that an empty push is answered `pushed` at the head. */
function acceptingEmptyPushes(): SyncBackend {
  const inner = memoryBackend()
  return {
    ...inner,
    async push(storeId, request) {
      if (request.events.length > 0) return inner.push(storeId, request)
      const { head } = await inner.pull(storeId, 0, 1)
      return { type: 'pushed', firstSeq: head + 1, head, backendId: inner.backendId }
    },
  }
}

const find = (cases: BackendConformanceCase[], start: string) => {
  const found = cases.find((c) => c.name.startsWith(start))
  if (!found) throw new Error(`no case named "${start}…" in the backend kit`)
  return found
}

describe('backend kit: crash hook', () => {
  it('passes every case, crash cases included, for a backend that is durable before it answers', async () => {
    const cases = casesOver('durable')
    expect(cases.filter((c) => c.suite.startsWith('durability: what was answered survives a crash')).length).toBeGreaterThanOrEqual(4)
    for (const c of cases) {
      expect(c.skip, c.name).toBeUndefined()
      await c.run()
    }
  })

  it('fails a write-behind backend, naming the push whose events the crash lost', async () => {
    const lost = find(casesOver('write-behind'), 'keeps every event answered pushed')
    await expect(lost.run()).rejects.toThrow(
      /push\(conformance-\S+, parentSeq \d+, \[[^\]]+\]\) was answered pushed \(firstSeq \d+\) but is not in the log after the crash/,
    )
  })

  it('fails a write-behind backend on the heads it told subscribers before they were durable', async () => {
    const told = find(casesOver('write-behind'), 'tells subscribers only heads that survive a crash')
    await expect(told.run()).rejects.toThrow(/subscribe\(conformance-\S+\) was told head 6; after a crash the log must reach it/)
  })

  it('skips the crash cases with a reason when no crash hook is given', () => {
    const cases = backendConformanceCases(() => memoryBackend())
    const crashCases = cases.filter((c) => c.suite.startsWith('durability: what was answered survives a crash'))
    expect(crashCases.length).toBeGreaterThanOrEqual(4)
    for (const c of crashCases) expect(c.skip).toMatch(/no crash hook: pass options\.crash/)
  })
})

describe('backend kit: empty pushes', () => {
  it('fails a backend that accepts an empty push, naming the request', async () => {
    const c = find(backendConformanceCases(acceptingEmptyPushes), 'refuses an empty push')
    await expect(c.run()).rejects.toThrow(
      /push\(conformance-\S+, parentSeq 0, events: \[\]\) on an empty log must reject with an invalid_message protocol error, but it answered \{"type":"pushed"/,
    )
  })

  it('passes memoryBackend on the same case', async () => {
    await find(
      backendConformanceCases(() => memoryBackend()),
      'refuses an empty push',
    ).run()
  })
})

describe('backend contract helpers from tidelog/server', () => {
  it('answers a ProtocolViolation a backend throws with its code and message, and any other error as internal without it', async () => {
    const inner = memoryBackend()
    const backend: SyncBackend = {
      ...inner,
      async push(storeId, request) {
        if (request.events[0]!.name === 'refused') throw new ProtocolViolation('too_large', 'this backend takes no event named refused')
        if (request.events[0]!.name === 'broken') throw new Error('disk on fire at /var/secret')
        return inner.push(storeId, request)
      },
    }
    const server = await createSyncServer({ backend, port: 0 })
    try {
      const push = async (name: string) => {
        const response = await fetch(`${server.url}/push`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({
            v: 1,
            type: 'push',
            storeId: 's',
            parentSeq: 0,
            events: [{ id: 'c:1', name, args: null, clientId: 'c', sessionId: 's', createdAt: 0 }],
          }),
        })
        return (await response.json()) as { type: string; code?: string; message?: string }
      }
      expect(await push('refused')).toMatchObject({ type: 'error', code: 'too_large', message: 'this backend takes no event named refused' })
      const broken = await push('broken')
      expect(broken).toMatchObject({ type: 'error', code: 'internal' })
      expect(broken.message).not.toContain('/var/secret')
      expect(await push('fine')).toMatchObject({ type: 'pushed', firstSeq: 1 })
    } finally {
      await server.close()
      await backend.close()
    }
  })

  it('exports judgePush, deciding retry before the head check, and the page cap', () => {
    const event = (id: string) => ({ id, name: 'e', args: null, clientId: 'c', sessionId: 's', createdAt: 0 })
    const log = { head: 5, seqOf: (id: string) => (({ 'c:1': 2, 'c:2': 3 }) as Record<string, number>)[id] }
    expect(judgePush(log, 1, [event('c:1'), event('c:2')])).toEqual({ kind: 'retry', firstSeq: 2 })
    expect(judgePush(log, 1, [event('c:3')])).toEqual({ kind: 'rejected' })
    expect(judgePush(log, 5, [event('c:3')])).toEqual({ kind: 'append' })
    expect(() => judgePush(log, 5, [])).toThrow(ProtocolViolation)
    // anyHead: appended on the head from any parentSeq at or below it; a retry is found wherever it landed after parentSeq
    expect(judgePush(log, 2, [event('c:3')], { anyHead: true })).toEqual({ kind: 'append' })
    expect(judgePush(log, 6, [event('c:3')], { anyHead: true })).toEqual({ kind: 'rejected' })
    expect(judgePush(log, 0, [event('c:1'), event('c:2')], { anyHead: true })).toEqual({ kind: 'retry', firstSeq: 2 })
    expect(judgePush(log, 0, [event('c:1'), event('c:2')])).toEqual({ kind: 'rejected' })
    // stored ids behind the head: rejected (an earlier push of them may have landed after the pull), at the head: a violation
    expect(judgePush(log, 2, [event('c:1'), event('c:2')], { anyHead: true })).toEqual({ kind: 'rejected' })
    expect(judgePush(log, 2, [event('c:2'), event('c:3')], { anyHead: true })).toEqual({ kind: 'rejected' })
    expect(() => judgePush(log, 5, [event('c:2'), event('c:3')], { anyHead: true })).toThrow(ProtocolViolation)
    // a push based on another incarnation of the log is rejected before anything else is judged
    const incarnation = { ...log, backendId: 'b1' }
    expect(judgePush(incarnation, 5, [event('c:3')], { backendId: 'b0' })).toEqual({ kind: 'rejected' })
    expect(judgePush(incarnation, 1, [event('c:1'), event('c:2')], { backendId: 'b0' })).toEqual({ kind: 'rejected' })
    expect(judgePush(incarnation, 5, [event('c:3')], { backendId: 'b1' })).toEqual({ kind: 'append' })
    expect(MAX_PULL_LIMIT).toBe(1000)
  })
})
