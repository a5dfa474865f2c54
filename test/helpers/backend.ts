import { type AddressInfo, createServer } from 'node:net'
import type { ConfirmedEvent, SyncBackend } from 'tidelog'

/** Every event of a storeId's log, page by page. */
export async function pullAll(backend: SyncBackend, storeId: string): Promise<ConfirmedEvent[]> {
  const events: ConfirmedEvent[] = []
  for (;;) {
    const page = await backend.pull(storeId, events.length, 1000)
    events.push(...page.events)
    if (!page.more) return events
  }
}

/** A port that was free a moment ago, for a server that must come back on the same one (so not port 0). */
export async function freePort(): Promise<number> {
  const probe = createServer()
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve))
  const { port } = probe.address() as AddressInfo
  await new Promise((resolve) => probe.close(resolve))
  return port
}
