export { memoryBackend } from '../backends/memory.js'
export { fileBackend, type FileBackend, type FileBackendOptions, type FileBackendStats } from '../backends/file.js'
export { checkFileBackend, type FileBackendCheck, type StoreCheck } from '../backends/file-check.js'
export { StoreDamagedError } from '../backends/file-log.js'
export {
  postgresBackend,
  migratePostgres,
  POSTGRES_SCHEMA_VERSION,
  type PostgresBackend,
  type PostgresBackendOptions,
  type PostgresBackendStats,
  type PostgresConnection,
  type PostgresPool,
  type PostgresPoolClient,
  type PostgresQueryResult,
} from '../backends/postgres.js'
export {
  createSyncServer,
  createHttpHandler,
  attachWebSocket,
  type SyncServer,
  type SyncServerOptions,
  type ServerLimits,
  type AuthenticateContext,
} from './sync-server.js'
export {
  createServerSession,
  answerRequest,
  parseRequest,
  type ServerSession,
  type ServerSessionOptions,
  type SessionWire,
  type SessionAnswer,
} from './session.js'
export type { SyncBackend } from '../transport.js'
// for backend authors (PROTOCOL.md, Backend contract)
export { MAX_PULL_LIMIT, ProtocolViolation, type ErrorCode } from '../protocol.js'
export { judgePush } from '../backends/judge-push.js'
