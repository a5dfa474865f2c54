/**
 * What crosses a tidelog BroadcastChannel (shapes and invariants B1–B3 in
 * broadcast-channel-client.ts; the tab link of PROTOCOL.md, Tabs, uses the
 * same messages). Every message names its sender (`from`) and its addressee
 * (`to`, `'*'` for everyone); the host stamps its own with its fencing `epoch`.
 */
import type { ClientMessage, PendingEvent, ServerMessage, SyncState } from '../src/protocol.js'

/** Addressing, added by `post`/`send` to every message. */
export interface Routing {
  from: string
  to: string
}

/** A client's messages, before routing: protocol requests, heartbeat/discovery pings, and its goodbye. */
export type ClientSends = (ClientMessage & { rid: string }) | { v: 1; type: 'ping' } | { v: 1; type: 'bye' }

/**
 * What an owner tab adds to a view beyond the protocol (PROTOCOL.md, Tabs): `ownerUpstream: false`
 * when it has no transport at all, so that a tab tells that from an owner that is only offline.
 */
export interface OwnerExtras {
  ownerUpstream?: false
}

/**
 * A host's messages, before routing and epoch: protocol answers and live
 * `events` (with the owner tab's pending list when a tab owns the storage, which
 * also answers `queued` to a push),
 * `host` (a ping answer or an announcement; `streaming` says whether it streams
 * to that client) and its goodbye.
 */
export type HostSends =
  | Exclude<ServerMessage, { type: 'events' | 'pulled' }>
  | (Extract<ServerMessage, { type: 'pulled' }> & OwnerExtras)
  | (Extract<ServerMessage, { type: 'events' }> & OwnerExtras & { pending?: PendingEvent[]; ownerState?: SyncState; backendId?: string })
  | { v: 1; rid?: string | number; type: 'queued' }
  | { v: 1; type: 'host'; streaming?: boolean }
  | { v: 1; type: 'bye' }

/** A client's message as it crosses the channel. */
export type ClientToHost = ClientSends & Routing
/** A host's message as it crosses the channel. */
export type HostToClient = HostSends & Routing & { epoch: number }
/** Anything on the channel. */
export type ChannelMessage = ClientToHost | HostToClient

/** The message of an event, if it has the routing every channel message carries (anything else on the channel is ignored). */
export function routed(data: unknown): ChannelMessage | undefined {
  if (typeof data !== 'object' || data === null) return undefined
  const m = data as Partial<Routing>
  return typeof m.from === 'string' && typeof m.to === 'string' ? (data as ChannelMessage) : undefined
}
