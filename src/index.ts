export { backoffDelay } from './backoff.js'
export type { SqlJsOptions } from './database.js'
export {
  BackendResetError,
  ConflictDroppedError,
  isTidelogError,
  MaterializeError,
  QueryError,
  SchemaError,
  StorageError,
  StorageLockedError,
  StoreClosedError,
  TIDELOG_ERROR_NAMES,
  TidelogError,
  type TidelogErrorName,
  TransportError,
  UnknownEventError,
  ValidationError,
  WasmLoadError,
} from './errors.js'
export { type LocalTransportOptions, localTransport } from './local-transport.js'
export { memoryStorage } from './memory-storage.js'
export type {
  ClientMessage,
  ConfirmedEvent,
  ErrorCode,
  JsonValue,
  PendingEvent,
  PullRequest,
  PullResponse,
  PushRequest,
  PushResponse,
  QueuedResponse,
  ServerMessage,
  SyncState,
} from './protocol.js'
export { createRequestTable, type RequestTable, type RequestTableOptions, type Rid, type TakenRequest } from './request-table.js'
export type {
  EventCreator,
  EventDefinition,
  EventOptions,
  EventValue,
  MaterializeContext,
  Materializer,
  Schema,
  SchemaInput,
  StandardSchemaV1,
} from './schema.js'
export { defineEvent, defineSchema } from './schema.js'
export type { SqlFragment } from './sql.js'
export { sql } from './sql.js'
export type { JournalRecord, LoadedLog, Snapshot, Storage, StorageHandle, StorageOpenOptions, TabLinks, TabOwner } from './storage.js'
export { type LogReader, loadLog, withStoragePolicy } from './storage-policy.js'
export { createStore } from './store.js'
export type {
  BootProgress,
  CommitReceipt,
  ConflictInfo,
  Store,
  StoredEvent,
  StoreOptions,
  StoreSync,
  SyncStatus,
} from './store-types.js'
export { type OwnerNotice, type SyncBackend, type Transport, type TransportHandlers, type TransportStatus, transportRules } from './transport.js'
