export { createStore } from './store.js'
export { defineSchema, defineEvent } from './schema.js'
export { sql } from './sql.js'
export { memoryStorage } from './memory-storage.js'
export { withStoragePolicy } from './storage-policy.js'
export { localTransport, type LocalTransportOptions } from './local-transport.js'
export { createRequestTable, type RequestTable, type RequestTableOptions, type TakenRequest, type Rid } from './request-table.js'
export { backoffDelay } from './backoff.js'
export {
  TidelogError,
  ValidationError,
  MaterializeError,
  QueryError,
  StoreClosedError,
  UnknownEventError,
  SchemaError,
  BackendResetError,
  TransportError,
  StorageLockedError,
  WasmLoadError,
  StorageError,
  ConflictDroppedError,
  isTidelogError,
  TIDELOG_ERROR_NAMES,
  type TidelogErrorName,
} from './errors.js'
export type { SqlFragment } from './sql.js'
export type {
  Schema,
  SchemaInput,
  EventDefinition,
  EventOptions,
  EventValue,
  EventCreator,
  Materializer,
  MaterializeContext,
  StandardSchemaV1,
} from './schema.js'
export type {
  Store,
  StoreOptions,
  StoreSync,
  SyncStatus,
  CommitReceipt,
  StoredEvent,
  ConflictInfo,
  BootProgress,
} from './store-types.js'
export type { SqlJsOptions } from './database.js'
export type {
  JsonValue,
  PendingEvent,
  ConfirmedEvent,
  PullRequest,
  PullResponse,
  PushRequest,
  PushResponse,
  QueuedResponse,
  SyncState,
  ClientMessage,
  ServerMessage,
  ErrorCode,
} from './protocol.js'
export type { Transport, TransportHandlers, TransportStatus, OwnerNotice, SyncBackend } from './transport.js'
export type { Storage, StorageHandle, StorageOpenOptions, JournalRecord, Snapshot, LoadedLog, TabLinks, TabOwner } from './storage.js'
