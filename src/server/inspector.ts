// GET /inspect of `tidelog serve`: a read-only page over the server's log of a
// storeId (events in seq order, filtered by name and text, a page at a time),
// and GET /inspect/events, the JSON it reads. Each request for a storeId's events
// passes `authenticate` as a pull would, with the token as `Authorization: Bearer`.
// The pending events, sync status and state tables live in clients: an app
// shows them with `mountInspector` from `tidelog/inspect`.
import type { IncomingMessage, ServerResponse } from 'node:http'
import { INSPECTOR_CSS, renderEventRows } from '../inspect-view.js'
import { type ConfirmedEvent, errorMessage, isValidStoreId, MAX_PULL_LIMIT } from '../protocol.js'
import { isAllowed, type ResolvedOptions, tokenOf } from './server-options.js'

/** Events per page by default, and at most (`limit`). */
export const INSPECT_PAGE_EVENTS = 100
export const INSPECT_MAX_PAGE_EVENTS = Math.min(500, MAX_PULL_LIMIT)
/** Events one request reads at most while looking for a name. */
export const INSPECT_MAX_SCAN = 10_000

const HEADERS = {
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
}

function json(response: ServerResponse, status: number, body: unknown) {
  response.writeHead(status, { ...HEADERS, 'content-type': 'application/json; charset=utf-8' }).end(JSON.stringify(body))
}

/** The page: static markup, its script reads /inspect/events. */
function page(): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tidelog inspector</title><link rel="icon" href="data:,">
<style>body { margin: 16px; background: #f4f1ea; } ${INSPECTOR_CSS}</style></head>
<body><div class="tl-inspector">
<h2>tidelog inspector · server log</h2>
<form class="tl-filters" id="form">
  <label>storeId <input id="storeId" required></label>
  <label>token <input id="token" type="password" autocomplete="off" placeholder="if the server asks for one"></label>
  <label>event <input id="name" placeholder="any"></label>
  <label>after seq <input id="after" type="number" min="0" value="0" style="width: 7em"></label>
  <button type="submit">Show</button>
</form>
<div class="tl-filters"><input id="text" type="search" placeholder="id, client or args contain…"><span id="summary"></span>
  <button type="button" id="first" disabled>First page</button><button type="button" id="next" disabled>Next page</button></div>
<p class="tl-error" id="error" hidden></p>
<div class="tl-scroll"><table><thead><tr><th>seq</th><th>event</th><th>client</th><th>created</th><th>args</th></tr></thead><tbody id="events"></tbody></table></div>
</div>
<script>
const renderEventRows = ${renderEventRows.toString()}
const $ = (id) => document.getElementById(id)
const params = new URLSearchParams(location.search)
$('storeId').value = params.get('storeId') || ''
$('name').value = params.get('name') || ''
$('after').value = params.get('after') || '0'
$('token').value = sessionStorage.getItem('tidelog-inspect-token') || ''
let shown = { events: [], next: null }
const draw = () => {
  const count = renderEventRows($('events'), shown.events, { text: $('text').value })
  $('summary').textContent = shown.head === undefined ? '' : count + ' of ' + shown.events.length + ' shown · head ' + shown.head
}
async function load() {
  const q = new URLSearchParams({ storeId: $('storeId').value, after: $('after').value || '0' })
  if ($('name').value) q.set('name', $('name').value)
  if (params.get('limit')) q.set('limit', params.get('limit'))
  history.replaceState(null, '', '?' + q)
  sessionStorage.setItem('tidelog-inspect-token', $('token').value)
  const headers = $('token').value ? { authorization: 'Bearer ' + $('token').value } : {}
  const response = await fetch('inspect/events?' + q, { headers })
  const body = await response.json()
  $('error').hidden = response.ok
  if (!response.ok) {
    $('error').textContent = body.message || response.statusText
    shown = { events: [], next: null }
  } else shown = body
  $('next').disabled = !shown.next
  $('first').disabled = $('after').value === '0'
  draw()
}
$('form').addEventListener('submit', (e) => { e.preventDefault(); load() })
$('text').addEventListener('input', draw)
$('next').addEventListener('click', () => { $('after').value = String(shown.next); load() })
$('first').addEventListener('click', () => { $('after').value = '0'; load() })
if ($('storeId').value) load()
</script></body></html>`
}

/** Answers GET /inspect and GET /inspect/events; read-only, behind `authenticate`. */
export function createInspector(opts: ResolvedOptions): (request: IncomingMessage, response: ServerResponse, url: URL) => Promise<void> {
  const html = page()
  return async (request, response, url) => {
    if (request.method !== 'GET' && request.method !== 'HEAD') {
      response.setHeader('allow', 'GET, HEAD')
      return json(response, 405, errorMessage('invalid_message', `${request.method} ${url.pathname} is not served: the inspector is read-only (GET).`))
    }
    if (url.pathname === '/inspect' || url.pathname === '/inspect/') {
      response.writeHead(200, {
        ...HEADERS,
        'content-type': 'text/html; charset=utf-8',
        'content-security-policy': "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; img-src data:",
      })
      return void response.end(request.method === 'HEAD' ? undefined : html)
    }
    if (url.pathname !== '/inspect/events')
      return json(
        response,
        404,
        errorMessage('invalid_message', `No route ${url.pathname}; the inspector serves GET /inspect and GET /inspect/events?storeId=&after=&limit=&name=.`),
      )
    const storeId = url.searchParams.get('storeId')
    const after = Number(url.searchParams.get('after') ?? 0)
    const limit = Number(url.searchParams.get('limit') ?? INSPECT_PAGE_EVENTS)
    const name = url.searchParams.get('name')
    if (!isValidStoreId(storeId)) return json(response, 400, errorMessage('invalid_message', 'GET /inspect/events needs ?storeId= (a valid storeId).'))
    if (!Number.isSafeInteger(after) || after < 0) return json(response, 400, errorMessage('invalid_message', '?after= must be a seq (an integer ≥ 0).'))
    if (!Number.isSafeInteger(limit) || limit < 1 || limit > INSPECT_MAX_PAGE_EVENTS)
      return json(response, 400, errorMessage('invalid_message', `?limit= must be an integer from 1 to ${INSPECT_MAX_PAGE_EVENTS}.`))
    try {
      if (!(await isAllowed(opts, storeId, tokenOf(request, url), request))) {
        return json(
          response,
          401,
          errorMessage(
            'unauthorized',
            `Not allowed to read storeId "${storeId}": send a valid token as Authorization: Bearer <token> (the inspector's token field).`,
          ),
        )
      }
      // with a name filter, read on until a page is full or INSPECT_MAX_SCAN events were read
      const events: ConfirmedEvent[] = []
      let last = after
      let head = 0
      let more = true
      while (more && events.length < limit && last - after < INSPECT_MAX_SCAN) {
        const pulled = await opts.backend.pull(storeId, last, name ? MAX_PULL_LIMIT : limit - events.length)
        head = pulled.head
        more = pulled.more
        for (const event of pulled.events) {
          if (events.length === limit) {
            more = true
            break
          }
          last = event.seq
          if (!name || event.name === name) events.push(event)
        }
        if (!pulled.events.length) break
      }
      json(response, 200, { storeId, head, events, next: more && last < head ? last : null })
    } catch (error) {
      opts.onError?.(error, 'inspect')
      json(response, 500, errorMessage('internal', 'The inspector could not read the log; the server logged why.'))
    }
  }
}
