// The inspector's view: one eventlog table and its styles, used by the panel an
// app mounts (src/inspect.ts) and by the page `tidelog serve` answers at /inspect
// (src/server/inspector.ts), which inlines these functions' source: so each is
// self-contained (no reference to anything outside its own body).

/** An eventlog row as the inspector shows it: `seq` null for a pending event. */
export interface InspectedEvent {
  seq: number | null
  id: string
  name: string
  clientId: string
  createdAt: number
  args: unknown
}

/** What the filters ask: event name (exact, '' for any), text anywhere in id, client or args, pending only. */
export interface EventFilter {
  name?: string
  text?: string
  pendingOnly?: boolean
}

/** Fills `tbody` with the events that pass `filter`; every value goes in as text, never as markup. Returns how many passed. */
export function renderEventRows(tbody: HTMLTableSectionElement, events: readonly InspectedEvent[], filter: EventFilter): number {
  const doc = tbody.ownerDocument
  const text = (filter.text || '').toLowerCase()
  const rows: HTMLTableRowElement[] = []
  for (const event of events) {
    if (filter.name && event.name !== filter.name) continue
    if (filter.pendingOnly && event.seq !== null) continue
    const args = JSON.stringify(event.args)
    if (text && !(event.id + ' ' + event.clientId + ' ' + args).toLowerCase().includes(text)) continue
    const tr = doc.createElement('tr')
    tr.className = event.seq === null ? 'tl-pending' : ''
    const cells = [
      event.seq === null ? 'pending' : String(event.seq),
      event.name,
      event.clientId,
      event.createdAt ? new Date(event.createdAt).toISOString().replace('T', ' ').slice(0, 19) : '',
      args,
    ]
    for (const value of cells) {
      const td = doc.createElement('td')
      td.textContent = value
      tr.appendChild(td)
    }
    rows.push(tr)
  }
  tbody.replaceChildren(...rows)
  return rows.length
}

/** The inspector's styles, scoped under `.tl-inspector`. */
export const INSPECTOR_CSS = `
.tl-inspector { font: 13px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; color: #1f2a30; background: #fffdf8; border: 1px solid #e7e1d6; border-radius: 8px; padding: 10px 12px; }
.tl-inspector h2 { font-size: 14px; margin: 12px 0 6px; }
.tl-inspector .tl-status { display: flex; flex-wrap: wrap; gap: 4px 16px; }
.tl-inspector .tl-status b { font-weight: 600; }
.tl-inspector .tl-filters { display: flex; flex-wrap: wrap; gap: 8px; align-items: center; margin: 6px 0; }
.tl-inspector input, .tl-inspector select, .tl-inspector button { font: inherit; padding: 2px 6px; }
.tl-inspector table { border-collapse: collapse; width: 100%; }
.tl-inspector th, .tl-inspector td { text-align: left; border-bottom: 1px solid #e7e1d6; padding: 2px 6px; vertical-align: top; overflow-wrap: anywhere; }
.tl-inspector tr.tl-pending td { color: #b45309; }
.tl-inspector .tl-scroll { max-height: 320px; overflow: auto; }
.tl-inspector .tl-error { color: #b91c1c; }
`
