export { type FileBackend, type FileBackendOptions, type FileBackendStats, fileBackend } from '../backends/file.js'
export { checkFileBackend, type FileBackendCheck, type StoreCheck } from '../backends/file-check.js'
export { StoreDamagedError } from '../backends/file-log.js'
export { judgePush } from '../backends/judge-push.js'
export { memoryBackend } from '../backends/memory.js'
export {
  migratePostgres,
  POSTGRES_SCHEMA_VERSION,
  type PostgresBackend,
  type PostgresBackendOptions,
  type PostgresBackendStats,
  type PostgresConnection,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
  postgresBackend,
} from '../backends/postgres.js'
// for backend authors (PROTOCOL.md, Backend contract)
export { type ErrorCode, MAX_PULL_LIMIT, ProtocolViolation } from '../protocol.js'
export type { SyncBackend } from '../transport.js'
export {
  answerRequest,
  createServerSession,
  parseRequest,
  type ServerSession,
  type ServerSessionOptions,
  type SessionAnswer,
  type SessionWire,
} from './session.js'
export {
  type AuthenticateContext,
  attachWebSocket,
  createHttpHandler,
  createSyncServer,
  type ServerLimits,
  type SyncServer,
  type SyncServerOptions,
} from './sync-server.js'
export { MIN_TOKEN_LENGTH, parseTokenFile, type TokenEntry, tokenList } from './token-list.js'
