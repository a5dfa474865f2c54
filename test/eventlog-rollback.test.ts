/**
 * I1 for the eventlog's own counters: a transaction that fails rolls back the head and the
 * pending count with the rows, so that the log never says it holds what its tables do not.
 */

import type { ConfirmedEvent, PendingEvent } from 'tidelog'
import { describe, expect, it } from 'vitest'
import { loadSqlJs } from '../src/database.js'
import { createEventLog, type EventLogHooks } from '../src/eventlog.js'
import { itemsUiSchema } from './helpers/items-ui-schema.js'

const hooks: EventLogHooks = { dev: false, onWarning: () => {}, onUnknownEvent: () => {} }
const event = (id: string, value: number): PendingEvent => ({ id, name: 'set', args: { id, value }, clientId: id.split(':')[0]!, sessionId: 's', createdAt: 1 })

describe('eventlog: a failed rebase', () => {
  it('leaves head, pending count, rows and state as they were when onConflict throws after the upstream events were applied', async () => {
    const log = createEventLog(await loadSqlJs(), itemsUiSchema, hooks)
    log.commit([event('me:1', 1)], false)
    const upstream: ConfirmedEvent[] = [1, 2].map((seq) => ({ ...event(`other:${seq}`, 10 + seq), seq }))
    const broken = () => {
      throw new Error('merge hook failed')
    }
    expect(() => log.applyUpstream(upstream, broken)).toThrow('merge hook failed')
    expect({ head: log.head, pending: log.pendingCount }).toEqual({ head: 0, pending: 1 })
    expect(log.events().map((e) => [e.id, e.seq])).toEqual([['me:1', null]])
    expect(log.db.all({ sql: 'SELECT id, value FROM items ORDER BY id', params: [] })).toEqual([{ id: 'me:1', value: 1 }])
    // the log goes on from there: the same events apply once the hook works
    const change = log.applyUpstream(upstream, (local) => local)
    expect({ head: log.head, pending: log.pendingCount, dropped: change.dropped.size }).toEqual({ head: 2, pending: 1, dropped: 0 })
    log.close()
  })
})
