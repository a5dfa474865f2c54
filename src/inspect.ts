// `tidelog/inspect`: a panel an app mounts on a live store — sync status,
// confirmed head, pending events, the eventlog with filters, and the state
// tables — updating as the store changes. `tidelog serve` shows the server's
// side of a storeId at /inspect.
import { effect, signal } from '@preact/signals-core'
import { type EventFilter, INSPECTOR_CSS, renderEventRows } from './inspect-view.js'
import type { SqlFragment } from './sql.js'
import type { Store } from './store-types.js'

export type { EventFilter, InspectedEvent } from './inspect-view.js'

/** Options of `mountInspector`. */
export interface InspectorOptions {
  /** Rows shown per state table. Default 100. */
  tableRows?: number
}

/** A mounted inspector; `close()` removes it and stops following the store. */
export interface Inspector {
  close(): void
}

const quote = (name: string) => `"${name.replace(/"/g, '""')}"`

/**
 * Mounts the inspector panel into `target`, following `store` live.
 * @example import { mountInspector } from 'tidelog/inspect'; mountInspector(document.getElementById('debug'), store)
 */
export function mountInspector(target: HTMLElement, store: Store, options: InspectorOptions = {}): Inspector {
  const doc = target.ownerDocument
  const limit = options.tableRows ?? 100
  const el = <K extends keyof HTMLElementTagNameMap>(tag: K, props: Record<string, unknown> = {}, ...children: (Node | string)[]): HTMLElementTagNameMap[K] => {
    const node = doc.createElement(tag)
    Object.assign(node, props)
    node.append(...children)
    return node
  }
  const root = el('div', { className: 'tl-inspector' })
  root.append(el('style', { textContent: INSPECTOR_CSS }))

  // status
  const status = el('div', { className: 'tl-status' })
  root.append(el('h2', { textContent: `tidelog · ${store.storeId}` }), status)

  // eventlog
  const filter = signal<EventFilter>({})
  const nameSelect = el('select', { title: 'event name' }, el('option', { value: '', textContent: 'every event' }))
  for (const name of Object.keys(store.schema.events).sort()) nameSelect.append(el('option', { value: name, textContent: name }))
  const textInput = el('input', { type: 'search', placeholder: 'id, client or args contain…' })
  const pendingBox = el('input', { type: 'checkbox' })
  const readFilter = () => (filter.value = { name: nameSelect.value, text: textInput.value, pendingOnly: pendingBox.checked })
  nameSelect.addEventListener('change', readFilter)
  textInput.addEventListener('input', readFilter)
  pendingBox.addEventListener('change', readFilter)
  const shown = el('span')
  const tbody = el('tbody')
  const head = el('thead', {}, el('tr', {}, ...['seq', 'event', 'client', 'created', 'args'].map((h) => el('th', { textContent: h }))))
  root.append(
    el('h2', { textContent: 'Eventlog' }),
    el('div', { className: 'tl-filters' }, nameSelect, textInput, el('label', {}, pendingBox, ' pending only'), shown),
    el('div', { className: 'tl-scroll tl-events' }, el('table', {}, head, tbody)),
  )

  // state tables
  const tableSelect = el('select', { title: 'table' })
  const tables = store
    .query<{ name: string }>({
      sql: "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE '\\_\\_tl\\_%' ESCAPE '\\' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
      params: [],
    })
    .value.map((t) => t.name)
  for (const name of tables) tableSelect.append(el('option', { value: name, textContent: name }))
  const selected = signal(tables[0] ?? '')
  tableSelect.addEventListener('change', () => (selected.value = tableSelect.value))
  const stateTable = el('table', { className: 'tl-state' })
  root.append(el('h2', { textContent: 'State' }), el('div', { className: 'tl-filters' }, tableSelect), el('div', { className: 'tl-scroll' }, stateTable))
  target.append(root)

  const stops = [
    effect(() => {
      const { state, head: confirmed, pending, error } = store.sync.status.value
      status.replaceChildren(
        ...[
          ['sync', state],
          ['confirmed head', String(confirmed)],
          ['pending', String(pending)],
          ['client', store.clientId],
        ].map(([k, v]) => el('span', {}, `${k} `, el('b', { textContent: v, className: `tl-${k!.replace(' ', '-')}` }))),
        ...(error ? [el('span', { className: 'tl-error', textContent: error.message })] : []),
      )
    }),
    effect(() => {
      store.sync.status.value // re-read the log on every commit, pull and confirmation
      const events = store.events().map((e) => ({ seq: e.seq, id: e.id, name: e.name, clientId: e.clientId, createdAt: e.createdAt, args: e.args }))
      const count = renderEventRows(tbody, events, filter.value)
      shown.textContent = `${count} of ${events.length}`
    }),
    effect(() => {
      const table = selected.value
      if (!table) return void stateTable.replaceChildren(el('tr', {}, el('td', { textContent: 'no tables' })))
      const query: SqlFragment = { sql: `SELECT * FROM ${quote(table)} LIMIT ${Math.max(1, Math.floor(limit))}`, params: [] }
      const rows = store.query(query).value
      const columns = rows.length ? Object.keys(rows[0]!) : []
      stateTable.replaceChildren(
        el('thead', {}, el('tr', {}, ...columns.map((c) => el('th', { textContent: c })))),
        el('tbody', {}, ...rows.map((row) => el('tr', {}, ...columns.map((c) => el('td', { textContent: row[c] === null ? 'NULL' : String(row[c]) }))))),
      )
    }),
  ]
  return {
    close() {
      for (const stop of stops) stop()
      root.remove()
    },
  }
}
